//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package mdns

import "syscall"

// reuseControl does nothing where address reuse is not available; mDNS then works only
// when no other responder holds the port.
func reuseControl(_, _ string, _ syscall.RawConn) error { return nil }
