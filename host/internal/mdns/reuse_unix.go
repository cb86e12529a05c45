//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package mdns

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reuseControl lets several mDNS sockets (other responders on the machine, other nodes in
// the same process) bind the same port; each of them receives every multicast packet.
func reuseControl(_, _ string, c syscall.RawConn) error {
	var sockErr error
	err := c.Control(func(fd uintptr) {
		if sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); sockErr != nil {
			return
		}
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return sockErr
}
