package callstate

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by callstate either is one of these
// or wraps one, so callers can branch with errors.Is; the typed errors below
// carry the details for callers that want them (errors.As).
var (
	// ErrClosed is returned by every call made after Room.Close or after the
	// room was disconnected for good.
	ErrClosed = errors.New("callstate: room closed")
	// ErrNotConnected is returned when a send needs a transport that is not
	// (or not yet) connected.
	ErrNotConnected = errors.New("callstate: not connected")
	// ErrReceiveOnly is returned by sends on a receive-only Room (joined
	// with JoinOptions.ReceiveOnly, or with a token without
	// canPublishData): it has no publisher connection.
	ErrReceiveOnly = errors.New("callstate: receive-only room: it has no publisher connection")
	// ErrNotPermitted is returned when the participant's token lacks a grant
	// the operation needs. The error is a *PermissionError naming the grant.
	ErrNotPermitted = errors.New("callstate: not permitted")
	// ErrTooLarge is returned when a payload or value exceeds a limit. The
	// error is a *SizeError naming the limit.
	ErrTooLarge = errors.New("callstate: too large")
	// ErrInvalidJSON is returned when a value that must be JSON is not, or
	// when a Go value cannot be marshalled to JSON.
	ErrInvalidJSON = errors.New("callstate: invalid JSON")
	// ErrInvalidArgument is returned for arguments that can never succeed,
	// such as an empty identity or a malformed URL.
	ErrInvalidArgument = errors.New("callstate: invalid argument")
	// ErrBadToken is returned when the server rejects the access token
	// (malformed, wrong signature, expired, or for another room).
	ErrBadToken = errors.New("callstate: token rejected")
	// ErrServerUnreachable is returned when the server cannot be reached.
	ErrServerUnreachable = errors.New("callstate: server unreachable")
	// ErrJoinRefused is returned when the server refuses the join for a
	// reason other than the token: for example the room is full (LiveKit
	// then answers the handshake with HTTP 500 and a terse message).
	ErrJoinRefused = errors.New("callstate: join refused")
	// ErrUnknownParticipant is returned when a message is addressed to an
	// identity that is not in the room.
	ErrUnknownParticipant = errors.New("callstate: unknown participant")
	// ErrNotFound is returned by the server API for a room or participant
	// that does not exist.
	ErrNotFound = errors.New("callstate: not found")
	// ErrLimitExceeded is returned when the server refuses an update because
	// it exceeds one of the server's limits.
	ErrLimitExceeded = errors.New("callstate: server limit exceeded")
	// ErrRejected is returned when the server refuses a request for a reason
	// not covered by a more specific error.
	ErrRejected = errors.New("callstate: request rejected")

	// ErrBackpressure is returned by a reliable send made while the Room
	// recovers its connection when the sends already waiting hold
	// JoinOptions.MaxQueuedBytes: the message was not sent.
	ErrBackpressure = errors.New("callstate: send queue full while reconnecting")
)

// errServerLeft is wrapped by the error of a Room the server ended (a
// Leave); Disconnected.Reason says why.
var errServerLeft = errors.New("callstate: the server ended the session")

// PermissionError reports an operation refused for want of a grant. It
// matches ErrNotPermitted with errors.Is.
type PermissionError struct {
	// Op is the refused operation, for example "SetMetadata".
	Op string
	// Grant is the token grant the operation needs, by its name in LiveKit
	// tokens, for example "canUpdateOwnMetadata".
	Grant string
	// Message is the server's explanation, when the server refused.
	Message string
}

func (e *PermissionError) Error() string {
	s := fmt.Sprintf("callstate: %s not permitted: the token lacks the %s grant", e.Op, e.Grant)
	if e.Message != "" {
		s += " (server: " + e.Message + ")"
	}
	return s
}

// Is reports whether target is ErrNotPermitted.
func (e *PermissionError) Is(target error) bool { return target == ErrNotPermitted }

// SizeError reports a value larger than a limit. It matches ErrTooLarge with
// errors.Is.
type SizeError struct {
	// What names the value, for example "metadata" or "lossy payload".
	What string
	// Size is the size of the value in bytes.
	Size int
	// Limit is the largest size allowed, in bytes.
	Limit int
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("callstate: %s is %d bytes, over the limit of %d", e.What, e.Size, e.Limit)
}

// Is reports whether target is ErrTooLarge.
func (e *SizeError) Is(target error) bool { return target == ErrTooLarge }

// JoinError reports a failed Join. It wraps ErrBadToken, ErrServerUnreachable,
// ErrJoinRefused or ErrInvalidArgument, and the underlying cause.
type JoinError struct {
	// StatusCode is the HTTP status of the refused WebSocket upgrade, or 0.
	StatusCode int
	// Message is the server's explanation (the body of the refusal), if any.
	Message string
	// Kind is one of ErrBadToken, ErrServerUnreachable, ErrJoinRefused,
	// ErrInvalidArgument.
	Kind error
	// Err is the underlying cause, if any.
	Err error
}

func (e *JoinError) Error() string {
	s := e.Kind.Error()
	if e.StatusCode != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the kind and the cause.
func (e *JoinError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// RequestError reports a signalling request that the server answered with a
// failure. It wraps a sentinel matching the server's reason: ErrNotPermitted,
// ErrLimitExceeded, ErrNotFound or ErrRejected.
type RequestError struct {
	// Op is the operation, for example "SetAttributes".
	Op string
	// Reason is the server's reason code, for example "LIMIT_EXCEEDED".
	Reason string
	// Message is the server's explanation.
	Message string
	// Kind is the sentinel the error matches.
	Kind error
}

func (e *RequestError) Error() string {
	s := fmt.Sprintf("callstate: %s refused by the server: %s", e.Op, e.Reason)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the sentinel the error matches.
func (e *RequestError) Unwrap() error { return e.Kind }
