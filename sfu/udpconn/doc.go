// Package udpconn is the UDP socket of the SFU's media port: a
// *net.UDPConn whose ReadFromAddrPort and WriteToAddrPort make their
// system calls directly instead of through the Go scheduler's system-call
// bookkeeping.
//
// The media socket is non-blocking and its calls never wait in the kernel;
// when there is nothing to read (or no room to write) the goroutine parks
// on the runtime's network poller like any other. Going around
// entersyscall/exitsyscall matters less for their own cost than for the
// runtime's monitor thread: with every P idle between packets it sleeps,
// and the first system call after each idle spell wakes it, which on a
// server that idles thousands of times a second costs a context switch
// each time, on the very core that forwards the media.
//
// Only the two calls on the forwarding path are replaced: recvmsg, which
// also brings the kernel's arrival stamp (SO_TIMESTAMPNS) for
// ReadFromAddrPortAt, and sendto. Everything else (deadlines, Close,
// buffer sizes, zoned IPv6 destinations) is the standard library's.
// ListenGroup opens several sockets on one address (SO_REUSEPORT), one per
// reader. On systems other than Linux Conn makes the standard library's
// calls under the same method names, and a group is one socket.
package udpconn
