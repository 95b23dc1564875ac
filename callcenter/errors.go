package callcenter

import (
	"errors"
	"fmt"
)

// Error codes. They are stable: clients and the signaling layer switch on
// them, so never rename one. Each maps to a human message in codeMessages.
const (
	CodeAuthFailed          = "auth_failed"           // unknown miniSdkToken, bad credentials, unknown customer id
	CodeBadSignature        = "bad_signature"         // sign does not match
	CodeSignatureRequired   = "signature_required"    // the tenant accepts signed entries only
	CodeStaleTimestamp      = "stale_timestamp"       // timestamp outside the window
	CodeReplayedNonce       = "replayed_nonce"        // nonce already used within the window
	CodeBadRequest          = "bad_request"           // malformed or missing input
	CodeNoCallTimes         = "no_call_times"         // the entry's callTimes are used up
	CodeOutsideWorkingHours = "outside_working_hours" // the tenant is closed now
	CodeNoAgentOnline       = "no_agent_online"       // nobody could take the call
	CodeVerifyRequired      = "verify_required"       // the tenant wants a verify code first
	CodeVerifyFailed        = "verify_failed"         // wrong, used or expired code
	CodeNotFound            = "not_found"             // no such call, form, agent, ...
	CodeInvalidState        = "invalid_state"         // the call is not in a state that allows this
	CodeForbidden           = "forbidden"             // the party is not part of this call
	CodeRateLimited         = "rate_limited"          // too many requests or attempts
	CodeUnavailable         = "unavailable"           // draining or closed
	CodeInternal            = "internal"              // a lower layer failed
)

var codeMessages = map[string]string{
	CodeAuthFailed:          "authorization failed",
	CodeBadSignature:        "the entry signature is invalid",
	CodeSignatureRequired:   "this entry must be signed",
	CodeStaleTimestamp:      "the entry timestamp is too old or in the future",
	CodeReplayedNonce:       "this entry was already used",
	CodeBadRequest:          "the request is malformed",
	CodeNoCallTimes:         "no call times left",
	CodeOutsideWorkingHours: "outside working hours",
	CodeNoAgentOnline:       "no agent is online",
	CodeVerifyRequired:      "a verify code is required",
	CodeVerifyFailed:        "the verify code is wrong or expired",
	CodeNotFound:            "not found",
	CodeInvalidState:        "not possible in the current call state",
	CodeForbidden:           "not allowed",
	CodeRateLimited:         "too many requests, try again later",
	CodeUnavailable:         "the service is not taking calls now",
	CodeInternal:            "internal error",
}

// Error is the one error type the Service returns. Code is one of the Code*
// constants; Message is a human text safe to show to the client; NavigateType
// is set when the client must leave the flow (1 auth failed, 2 no call times).
type Error struct {
	Code         string
	Message      string
	NavigateType int
	err          error
}

func (e *Error) Error() string {
	if e.err != nil {
		return e.Code + ": " + e.Message + ": " + e.err.Error()
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the lower error, if any.
func (e *Error) Unwrap() error { return e.err }

// Is matches another *Error with the same Code, so callers can write
// errors.Is(err, &callcenter.Error{Code: callcenter.CodeNotFound}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func newErr(code string, cause error) *Error {
	e := &Error{Code: code, Message: codeMessages[code], err: cause}
	switch code {
	case CodeAuthFailed, CodeBadSignature, CodeSignatureRequired, CodeStaleTimestamp, CodeReplayedNonce:
		e.NavigateType = NavigateAuthFailed
	case CodeNoCallTimes:
		e.NavigateType = NavigateNoCallTimes
	}
	return e
}

func errf(code, format string, args ...any) *Error {
	return newErr(code, fmt.Errorf(format, args...))
}

func internal(what string, err error) *Error {
	return newErr(CodeInternal, fmt.Errorf("%s: %w", what, err))
}

// CodeOf returns the code of err, CodeInternal for foreign errors and ""
// for nil.
func CodeOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
