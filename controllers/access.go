package controllers

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=selfsubjectaccessreviews,verbs=create

// ReadableIstioNamespaces keeps, of cfg.IstioNamespaces, those where virtmesh
// may list and watch ConfigMaps, and says why it drops the others: a cache of
// ConfigMaps virtmesh may not read never syncs, and the manager would stop
// (and the webhook with it). Istio's namespace may not exist yet either (the
// Role for it could not be applied). Called once, before the manager's cache
// is built; RBAC granted later takes a restart.
func ReadableIstioNamespaces(ctx context.Context, cfg *rest.Config, namespaces []string) ([]string, []string, error) {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, nil, err
	}
	// Never nil: Config reads a nil ReadableIstioNamespaces as "not probed,
	// all of them", which would build the cache that cannot sync.
	readable, why := []string{}, []string(nil)
	for _, ns := range namespaces {
		ok := true
		for _, verb := range []string{"list", "watch"} {
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Resource: "configmaps", Verb: verb}}}
			if err := c.Create(ctx, review); err != nil {
				return nil, nil, fmt.Errorf("asking whether virtmesh may %s ConfigMaps in %s: %w", verb, ns, err)
			}
			ok = ok && review.Status.Allowed
		}
		if ok {
			readable = append(readable, ns)
		} else {
			why = append(why, fmt.Sprintf("virtmesh may not list and watch ConfigMaps in namespace %q (install Istio first, "+
				"then apply manifests/rbac again; for another namespace, add a Role and RoleBinding there)", ns))
		}
	}
	return readable, why, nil
}
