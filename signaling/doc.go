// Package signaling is the WebSocket front door of avs-server: it accepts
// connections from customers and agents, frames JSON requests, replies and
// pushes, keeps sessions alive across short disconnections (resume tokens),
// enforces per-connection limits, and carries the SDP and ICE exchange between
// a client and its SFU room.
//
// It knows connections and messages and owns no business rules. Requests that
// mean something to the call center are passed to a Handler (see callflow.go
// for the binding to package callcenter); media requests are passed to a Media
// implementation (package sfu). The wire protocol is documented in
// docs/protocol.md.
package signaling
