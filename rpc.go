package callstate

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// RpcErrorCode is the code of an RPC failure. LiveKit reserves 1400-1499
// for failures before the handler ran and 1500-1599 for failures while or
// after it ran; an application's handler may answer any other code.
type RpcErrorCode uint32

// LiveKit's built-in RPC error codes.
const (
	// RpcApplicationError: the handler failed without a code of its own.
	RpcApplicationError RpcErrorCode = 1500
	// RpcConnectionTimeout: the recipient did not acknowledge the request
	// in time (the server API waits 2 s for the acknowledgement;
	// Room.PerformRpc, like livekit-client, 7 s).
	RpcConnectionTimeout RpcErrorCode = 1501
	// RpcResponseTimeout: the recipient acknowledged but did not answer
	// within the response timeout.
	RpcResponseTimeout RpcErrorCode = 1502
	// RpcRecipientDisconnected: the recipient left before answering.
	RpcRecipientDisconnected RpcErrorCode = 1503
	// RpcResponsePayloadTooLarge: the answer exceeds 15 KiB.
	RpcResponsePayloadTooLarge RpcErrorCode = 1504
	// RpcSendFailed: the request could not be sent.
	RpcSendFailed RpcErrorCode = 1505

	// RpcUnsupportedMethod: the recipient has no handler for the method.
	RpcUnsupportedMethod RpcErrorCode = 1400
	// RpcRecipientNotFound: no participant of that identity.
	RpcRecipientNotFound RpcErrorCode = 1401
	// RpcRequestPayloadTooLarge: the request exceeds 15 KiB.
	RpcRequestPayloadTooLarge RpcErrorCode = 1402
	// RpcUnsupportedServer: the server does not relay RPC.
	RpcUnsupportedServer RpcErrorCode = 1403
	// RpcUnsupportedVersion: the recipient speaks another RPC version.
	RpcUnsupportedVersion RpcErrorCode = 1404
)

// MaxRpcPayload is the largest RPC request or response payload LiveKit
// relays, in bytes.
const MaxRpcPayload = 15360

// rpcMessages are LiveKit's messages for its built-in codes.
var rpcMessages = map[RpcErrorCode]string{
	RpcApplicationError:        "Application error in method handler",
	RpcConnectionTimeout:       "Connection timeout",
	RpcResponseTimeout:         "Response timeout",
	RpcRecipientDisconnected:   "Recipient disconnected",
	RpcResponsePayloadTooLarge: "Response payload too large",
	RpcSendFailed:              "Failed to send",
	RpcUnsupportedMethod:       "Method not supported at destination",
	RpcRecipientNotFound:       "Recipient not found",
	RpcRequestPayloadTooLarge:  "Request payload too large",
	RpcUnsupportedServer:       "RPC not supported by server",
	RpcUnsupportedVersion:      "Unsupported RPC version",
}

// RpcError is the failure of an RPC call: one of LiveKit's built-in codes,
// or a code and message answered by the recipient's handler. It matches,
// with errors.Is, ErrUnknownParticipant for RpcRecipientNotFound and
// ErrTooLarge for the payload size codes.
type RpcError struct {
	// Code is the failure's code.
	Code RpcErrorCode
	// Message describes the failure; for the built-in codes, LiveKit's
	// message.
	Message string
	// Data is optional detail from the handler.
	Data string
}

// NewRpcError returns an RpcError with code, and LiveKit's message when the
// code is built in and message is empty.
func NewRpcError(code RpcErrorCode, message, data string) *RpcError {
	if message == "" {
		message = rpcMessages[code]
	}
	return &RpcError{Code: code, Message: message, Data: data}
}

func (e *RpcError) Error() string {
	s := fmt.Sprintf("callstate: RPC error %d", e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Data != "" {
		s += ": " + e.Data
	}
	return s
}

// Is reports whether target is the sentinel matching e's code.
func (e *RpcError) Is(target error) bool {
	switch e.Code {
	case RpcRecipientNotFound:
		return target == ErrUnknownParticipant
	case RpcRequestPayloadTooLarge, RpcResponsePayloadTooLarge:
		return target == ErrTooLarge
	}
	return false
}

// rpcErrorText matches LiveKit's text form of an RPC error, as the server
// API quotes it in a Twirp error message: "RpcError <code>: <message>" and
// optionally ": <data>".
var rpcErrorText = regexp.MustCompile(`RpcError (\d{1,10}): (.*)$`)

// parseRpcErrorText extracts an RpcError from a server message. The text
// does not delimit the message from the data: for a built-in code, the
// message is LiveKit's and the rest is data; otherwise the message ends at
// the first ": ".
func parseRpcErrorText(s string) (*RpcError, bool) {
	m := rpcErrorText.FindStringSubmatch(s)
	if m == nil {
		return nil, false
	}
	code, err := strconv.ParseUint(m[1], 10, 32)
	if err != nil {
		return nil, false
	}
	e := &RpcError{Code: RpcErrorCode(code)}
	rest := m[2]
	if known, ok := rpcMessages[e.Code]; ok && strings.HasPrefix(rest, known) {
		e.Message = known
		e.Data = strings.TrimPrefix(strings.TrimPrefix(rest, known), ": ")
		return e, true
	}
	e.Message, e.Data, _ = strings.Cut(rest, ": ")
	return e, true
}
