package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Error codes produced by the transport itself. Business codes come from the
// Handler and pass through unchanged.
const (
	CodeBadJSON              = "bad_json"
	CodeBadRequest           = "bad_request"
	CodeUnknownType          = "unknown_type"
	CodeMessageTooLarge      = "message_too_large"
	CodeRateLimited          = "rate_limited"
	CodeBusy                 = "busy"
	CodeUnauthenticated      = "unauthenticated"
	CodeForbidden            = "forbidden"
	CodeAlreadyAuthenticated = "already_authenticated"
	CodeResumeFailed         = "resume_failed"
	CodeTimeout              = "timeout"
	CodeInternal             = "internal"
	CodeNoCall               = "no_call"
	CodeMediaFailed          = "media_failed"
)

// Close codes sent by the server besides the standard 1000, 1001, 1009 and
// 1011.
const (
	CloseSessionTakenOver = 4001 // the session was resumed on another socket
	CloseAuthTimeout      = 4002 // no authentication within auth_timeout
	CloseTooManyErrors    = 4008 // limit violations went on after errors
	CloseSlowConsumer     = 4009 // the client did not read its messages
)

// Error is a failure with a stable code that a client can act on. Handlers
// return it (or wrap it) to choose what the client sees; any other error is
// reported as "internal" and logged.
type Error struct {
	Code    string
	Message string
	// NavigateType, when not zero, tells the customer's client where the
	// flow returns to (PRODUCT.md §2: 1 auth failed, 2 no call times left).
	NavigateType int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// inbound is a client message as read from the socket. ID is kept raw so a
// client may use strings or numbers and gets back exactly what it sent.
type inbound struct {
	ID   json.RawMessage `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

const (
	maxIDBytes   = 64
	maxTypeBytes = 64
)

// decodeInbound parses one client message. The returned *Error says what
// was wrong; the inbound may still carry the id so the error can be matched.
func decodeInbound(b []byte) (inbound, *Error) {
	var m inbound
	if err := json.Unmarshal(b, &m); err != nil {
		return inbound{}, Errorf(CodeBadJSON, "message is not a JSON object: %v", err)
	}
	if len(m.ID) > 0 {
		switch m.ID[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		default:
			m.ID = nil
			return m, Errorf(CodeBadRequest, "id must be a string or a number")
		}
		if len(m.ID) > maxIDBytes {
			m.ID = nil
			return m, Errorf(CodeBadRequest, "id longer than %d bytes", maxIDBytes)
		}
	}
	if len(m.ID) == 0 {
		return m, Errorf(CodeBadRequest, "missing id")
	}
	if m.Type == "" {
		return m, Errorf(CodeBadRequest, "missing type")
	}
	if len(m.Type) > maxTypeBytes {
		return m, Errorf(CodeBadRequest, "type longer than %d bytes", maxTypeBytes)
	}
	if bytes.Equal(m.Data, []byte("null")) {
		m.Data = nil
	}
	return m, nil
}

type wireError struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	NavigateType int    `json:"navigateType,omitempty"`
}

// SessionInfo is what a client needs to resume its session; it rides on the
// reply that authenticated or resumed the session.
type SessionInfo struct {
	ID           string `json:"id"`
	Role         string `json:"role"`
	PartyID      int64  `json:"partyId"`
	ResumeToken  string `json:"resumeToken"`
	GraceSeconds int    `json:"graceSeconds"`
	LastSeq      uint64 `json:"lastSeq"`
}

type outbound struct {
	ID      json.RawMessage `json:"id,omitempty"`
	Type    string          `json:"type"`
	Seq     uint64          `json:"seq,omitempty"`
	Data    any             `json:"data,omitempty"`
	Error   *wireError      `json:"error,omitempty"`
	Session *SessionInfo    `json:"session,omitempty"`
}

func encodeReply(id json.RawMessage, data any, info *SessionInfo) ([]byte, error) {
	if data == nil {
		data = struct{}{}
	}
	b, err := json.Marshal(outbound{ID: id, Type: "reply", Data: data, Session: info})
	if err != nil {
		return nil, fmt.Errorf("encode reply: %w", err)
	}
	return b, nil
}

func encodeError(id json.RawMessage, e *Error) []byte {
	b, err := json.Marshal(outbound{ID: id, Type: "error", Error: &wireError{
		Code: e.Code, Message: e.Message, NavigateType: e.NavigateType,
	}})
	if err != nil {
		// Only strings and ints go in, so this is unreachable; still, never
		// panic on the network path.
		return []byte(`{"type":"error","error":{"code":"internal","message":"internal error"}}`)
	}
	return b
}

func encodePush(typ string, seq uint64, data any) ([]byte, error) {
	b, err := json.Marshal(outbound{Type: typ, Seq: seq, Data: data})
	if err != nil {
		return nil, fmt.Errorf("encode push %s: %w", typ, err)
	}
	return b, nil
}

// asError turns any handler error into what the client sees.
func asError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}
