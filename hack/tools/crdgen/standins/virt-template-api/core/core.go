// Package core is a compile-only stand-in for kubevirt.io/virt-template-api/core.
package core

// Names referenced by kubevirt.io/kubevirt/pkg/controller.
const (
	GroupName            = "template.kubevirt.io"
	SingularResourceName = "virtualmachinetemplate"
	PluralResourceName   = "virtualmachinetemplates"
)
