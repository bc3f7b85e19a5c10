package testkit

import "net"

// FreeAddress returns 127.0.0.1:<port> with a port nobody listens on (it was
// free a moment ago; the caller binds it next). It panics when no loopback
// port can be had at all, which leaves no test or program anything to run.
func FreeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
