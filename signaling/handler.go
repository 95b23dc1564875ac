package signaling

import (
	"context"
	"encoding/json"
)

// Party identifies who is on the other end of a session.
type Party struct {
	Role string // RoleCustomer or RoleAgent
	ID   int64
}

// Roles a Party can have.
const (
	RoleCustomer = "customer"
	RoleAgent    = "agent"
)

// Access says who may send a request type.
type Access int

const (
	// Public requests are accepted before authentication (the auth requests
	// themselves).
	Public Access = iota
	// Authenticated requests need a session with a party of any role.
	Authenticated
	// CustomerOnly and AgentOnly requests need that role.
	CustomerOnly
	AgentOnly
)

// Route declares one request type the Handler answers.
type Route struct {
	Type   string
	Access Access
}

// Request is one client request handed to the Handler.
type Request struct {
	Type    string
	Data    json.RawMessage // nil when the client sent no data
	Session *Session
	// RemoteAddr is the client's address (after real_ip_header), for the
	// business layer's own rate limits.
	RemoteAddr string
	// Draining is set once Shutdown has begun; handlers refuse new calls.
	Draining bool
}

// Decode unmarshals the request data into v; a missing data object decodes
// as {}. The error is an *Error with code bad_request.
func (r *Request) Decode(v any) error {
	if len(r.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		return Errorf(CodeBadRequest, "%s: invalid data: %v", r.Type, err)
	}
	return nil
}

// EndReason says why a session ended.
type EndReason string

// Reasons a session ends.
const (
	EndGraceExpired EndReason = "grace_expired" // socket lost and not resumed in time
	EndClientClosed EndReason = "client_closed" // the client sent session.close
	EndShutdown     EndReason = "shutdown"      // the server is going away
)

// Handler is the business side of the protocol, implemented in callflow.go
// on top of package callcenter. The transport calls it without holding any
// of its own locks, so a Handler may call back into the Server and Session.
type Handler interface {
	// Routes lists the request types the Handler answers; any other type,
	// except the transport's own (ping, session.*, media.*), is answered
	// with unknown_type. It is called once, by SetHandler.
	Routes() []Route
	// Handle answers one request. The reply value is marshalled to JSON as
	// the reply's data; an error becomes an error reply (see Error).
	// Authentication requests call req.Session.Authenticate on success.
	Handle(ctx context.Context, req *Request) (any, error)
	// SessionEnded tells the business layer that an authenticated session
	// is gone for good, so a waiting customer abandons the queue or a call
	// is hung up. others is how many other live sessions the party has.
	SessionEnded(ctx context.Context, s *Session, reason EndReason, others int)
}
