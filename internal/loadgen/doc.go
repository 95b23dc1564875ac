// Package loadgen drives one-to-one video calls against an avs-server and
// measures what the server does to them.
//
// Each call has two participants. Each participant publishes pre-encoded
// audio and video at real-time pace and plays the other participant's media,
// so a call makes the server forward four streams. Because the generator holds
// both ends of every stream, it can match each received packet with the
// moment its payload was sent and so measure one-way latency through the
// server, not only loss.
//
// The generator shares a small machine with the server it measures, so the
// send path replays RTP payloads cut once at start, and the receive path
// parses headers in place without per-packet allocations of its own.
package loadgen
