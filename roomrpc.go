package callstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
)

// Topics and attributes of LiveKit's RPC over text streams (version 2).
const (
	rpcRequestTopic  = "lk.rpc_request"
	rpcResponseTopic = "lk.rpc_response"
	attrRpcID        = "lk.rpc_request_id"
	attrRpcMethod    = "lk.rpc_request_method"
	attrRpcTimeout   = "lk.rpc_request_response_timeout_ms"
	attrRpcVersion   = "lk.rpc_request_version"
)

const (
	// DefaultRpcTimeout is how long Room.PerformRpc waits for an answer
	// when RpcOptions.ResponseTimeout is zero: livekit-client's default.
	DefaultRpcTimeout = 15 * time.Second
	// MaxRpcHandlers is how many RPC handlers of one Room run at once.
	// A request arriving while that many run is answered at once with
	// RpcApplicationError ("too many RPC calls in progress") rather than
	// queued: the caller learns it at once instead of timing out, and a
	// flood of requests costs no memory.
	MaxRpcHandlers = 32

	// rpcAckTimeout is how long a caller waits for the acknowledgement, as
	// livekit-client does (its maxRoundTripLatency).
	rpcAckTimeout = 7 * time.Second
	// rpcMinDeadline is the least response timeout sent to the callee:
	// livekit-client sends at least the acknowledgement timeout plus a
	// second, so that the callee's deadline allows for the round trip.
	rpcMinDeadline = rpcAckTimeout + time.Second
	// maxRpcRefusals bounds the goroutines sending refusals (unsupported
	// method or version, busy) at once; beyond it a request is dropped and
	// its caller times out.
	maxRpcRefusals = 64
	// rpcReplyTimeout bounds the send of an acknowledgement or answer.
	rpcReplyTimeout = 10 * time.Second
	// LiveKit's limits on an error's message and data.
	maxRpcErrorMessage = 256
	maxRpcErrorData    = 15 * 1024
)

// RpcInvocation is an RPC request, as a method handler receives it.
type RpcInvocation struct {
	// RequestID is the request's id, chosen by the caller.
	RequestID string
	// CallerIdentity is the caller's identity, as the server stamped it;
	// empty for a call from the server API (RoomService.PerformRpc).
	CallerIdentity string
	// Method is the method called.
	Method string
	// Payload is the request's payload.
	Payload string
	// ResponseTimeout is how long the caller waits for the answer, as it
	// said; the handler's ctx ends then.
	ResponseTimeout time.Duration
}

// RpcHandler answers an RPC request: the answer's payload, or an error. An
// *RpcError (see NewRpcError) reaches the caller with its code, message and
// data; any other error reaches it as RpcApplicationError with LiveKit's
// generic message, so that internal details do not leak.
//
// ctx ends when the caller's response timeout has passed, when the caller
// leaves the room (context.Cause is then ErrRpcCallerLeft), or when the Room
// ends. An answer after that is dropped.
type RpcHandler func(ctx context.Context, inv RpcInvocation) (string, error)

// ErrRpcCallerLeft is the cause of an RPC handler's ctx when the caller left
// the room.
var ErrRpcCallerLeft = errors.New("callstate: RPC caller left the room")

// rpcState is a Room's RPC bookkeeping. Its mutex may be taken while r.mu is
// held, never the other way round.
type rpcState struct {
	mu       sync.Mutex
	handlers map[string]RpcHandler
	calls    map[string]*rpcCall                           // outgoing, by request id
	serving  map[string]map[string]context.CancelCauseFunc // incoming, by caller identity then request id
	slots    chan struct{}                                 // MaxRpcHandlers
	refusals chan struct{}                                 // maxRpcRefusals
	busy     atomic.Uint64                                 // requests refused for MaxRpcHandlers
	dropped  atomic.Uint64                                 // requests dropped for maxRpcRefusals
}

func (s *rpcState) init() {
	s.handlers = map[string]RpcHandler{}
	s.calls = map[string]*rpcCall{}
	s.serving = map[string]map[string]context.CancelCauseFunc{}
	s.slots = make(chan struct{}, MaxRpcHandlers)
	s.refusals = make(chan struct{}, maxRpcRefusals)
}

// rpcCall is an outgoing call waiting for its acknowledgement and answer.
type rpcCall struct {
	dest    string
	ackOnce sync.Once
	acked   chan struct{}
	done    chan rpcResult // buffered: written once, by whoever removes the call
}

type rpcResult struct {
	payload string
	err     error
}

// RegisterRpcMethod makes handler answer RPC calls of method, from other
// participants (livekit-client's performRpc) and from the server API. It
// replaces the method's handler, if any.
//
// Handlers run on goroutines of their own, never on the Room's receive
// path, at most MaxRpcHandlers at once (see there for what happens
// beyond). The request is acknowledged before the handler starts. Answers
// to callers that speak RPC over data streams (livekit-client 2.x, and
// callstate) may be as large as the Room's maximum message size; others
// are limited to MaxRpcPayload, and a larger answer reaches them as
// RpcResponsePayloadTooLarge. A handler still running when the Room closes
// sees its ctx end; Close does not wait for it to return.
func (r *Room) RegisterRpcMethod(method string, handler RpcHandler) error {
	if method == "" || handler == nil {
		return fmt.Errorf("%w: RegisterRpcMethod: empty method or nil handler", ErrInvalidArgument)
	}
	r.rpc.mu.Lock()
	r.rpc.handlers[method] = handler
	r.rpc.mu.Unlock()
	return nil
}

// UnregisterRpcMethod removes method's handler; calls of it are then
// answered with RpcUnsupportedMethod. Calls being handled go on.
func (r *Room) UnregisterRpcMethod(method string) {
	r.rpc.mu.Lock()
	delete(r.rpc.handlers, method)
	r.rpc.mu.Unlock()
}

// PerformRpc calls method on the participant destination with payload and
// returns the handler's answer, waiting at most opts.ResponseTimeout
// (DefaultRpcTimeout when opts is nil or it is zero).
//
// It fails with an *RpcError: RpcRecipientNotFound at once when destination
// is not in the room as the Room knows it (see WaitForParticipant);
// RpcRequestPayloadTooLarge at once when payload exceeds MaxRpcPayload and
// the destination does not speak RPC over data streams (client protocol
// 1, livekit-client 2.x; to those the payload may be as large as the
// Room's maximum message size); RpcSendFailed, also matching the cause,
// when the request cannot be sent; RpcConnectionTimeout when the
// destination does not acknowledge within 7 s; RpcResponseTimeout when it
// does not answer in time; RpcRecipientDisconnected at once when it leaves
// before answering; or the code, message and data its handler answered.
// It returns ctx's error when ctx ends first, and an error matching
// ErrClosed when the Room ends.
func (r *Room) PerformRpc(ctx context.Context, destination, method, payload string, opts *RpcOptions) (string, error) {
	const op = "PerformRpc"
	if err := r.checkOpen(); err != nil {
		return "", err
	}
	var o RpcOptions
	if opts != nil {
		o = *opts
	}
	if method == "" {
		return "", fmt.Errorf("%w: %s: empty method", ErrInvalidArgument, op)
	}
	if o.ResponseTimeout < 0 {
		return "", fmt.Errorf("%w: %s: negative ResponseTimeout", ErrInvalidArgument, op)
	}
	timeout := o.ResponseTimeout
	if timeout == 0 {
		timeout = DefaultRpcTimeout
	}
	id := newStreamID()
	call := &rpcCall{dest: destination, acked: make(chan struct{}), done: make(chan rpcResult, 1)}
	// The call is registered under r.mu, with the check that the
	// destination is here, so that its leaving cannot slip between them.
	r.mu.Lock()
	p, ok := r.remotes[destination]
	if ok {
		r.rpc.mu.Lock()
		r.rpc.calls[id] = call
		r.rpc.mu.Unlock()
	}
	r.mu.Unlock()
	if !ok {
		return "", NewRpcError(RpcRecipientNotFound, "", "")
	}
	defer func() {
		r.rpc.mu.Lock()
		delete(r.rpc.calls, id)
		r.rpc.mu.Unlock()
	}()
	v2 := p.clientProtocol >= 1
	if !v2 && len(payload) > MaxRpcPayload {
		return "", NewRpcError(RpcRequestPayloadTooLarge, "", "")
	}
	deadline := max(timeout, rpcMinDeadline)
	var err error
	if v2 {
		err = r.send(ctx, op, chunk.Message{
			Topic:        rpcRequestTopic,
			Payload:      []byte(payload),
			Destinations: []string{destination},
			Reliable:     true,
			Stream:       true,
			Text:         true,
			Attributes: map[string]string{
				attrRpcID:      id,
				attrRpcMethod:  method,
				attrRpcTimeout: strconv.FormatInt(deadline.Milliseconds(), 10),
				attrRpcVersion: "2",
			},
		})
	} else if err = r.preflight(op, []string{destination}); err == nil {
		err = r.sendPacket(ctx, op, &lkpb.DataPacket{
			DestinationIdentities: []string{destination},
			Value: &lkpb.DataPacket_RpcRequest{RpcRequest: &lkpb.RpcRequest{
				Id:                id,
				Method:            method,
				Payload:           payload,
				ResponseTimeoutMs: uint32(deadline.Milliseconds()),
				Version:           1,
			}},
		})
	}
	if err != nil {
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return "", err
		}
		return "", fmt.Errorf("%w: %w", NewRpcError(RpcSendFailed, "", ""), err)
	}
	ack := time.NewTimer(rpcAckTimeout)
	defer ack.Stop()
	resp := time.NewTimer(timeout)
	defer resp.Stop()
	ackC, acked := ack.C, call.acked
	for {
		select {
		case <-acked:
			ack.Stop()
			ackC, acked = nil, nil
		case res := <-call.done:
			return res.payload, res.err
		case <-ackC:
			return "", NewRpcError(RpcConnectionTimeout, "", "")
		case <-resp.C:
			return "", NewRpcError(RpcResponseTimeout, "", "")
		case <-ctx.Done():
			return "", fmt.Errorf("callstate: %s: %w", op, ctx.Err())
		case <-r.closing:
			return "", r.endError()
		}
	}
}

// finishCall hands res to the call id, if from is its destination.
func (s *rpcState) finishCall(id, from string, res rpcResult) {
	s.mu.Lock()
	c := s.calls[id]
	if c != nil && c.dest == from {
		delete(s.calls, id)
		c.done <- res
	}
	s.mu.Unlock()
}

func (s *rpcState) ack(id, from string) {
	s.mu.Lock()
	c := s.calls[id]
	s.mu.Unlock()
	if c != nil && c.dest == from {
		c.ackOnce.Do(func() { close(c.acked) })
	}
}

// rpcGoneLocked fails the calls to p, which left, and cancels the handlers
// of its calls. r.mu is held.
func (r *Room) rpcGoneLocked(p Participant) {
	s := &r.rpc
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, c := range s.calls {
		if c.dest == p.Identity {
			delete(s.calls, id)
			c.done <- rpcResult{err: NewRpcError(RpcRecipientDisconnected, "", "")}
		}
	}
	for _, cancel := range s.serving[p.Identity] {
		cancel(ErrRpcCallerLeft)
	}
	delete(s.serving, p.Identity)
}

// rpcIncoming is a request received, v1 or v2.
type rpcIncoming struct {
	caller, id, method, payload string
	timeout                     time.Duration
	version                     int
	// streamReply: answer with a text stream (the caller speaks v2).
	streamReply bool
	// fromServer: a call of the server API.
	fromServer bool
	// refuse, when set, is the answer: the request is refused before any
	// handler runs.
	refuse *RpcError
}

// onRpcRequestPacket handles a v1 request. It does not run under r.mu.
func (r *Room) onRpcRequestPacket(pkt *lkpb.DataPacket, req *lkpb.RpcRequest) {
	caller := pkt.GetParticipantIdentity()
	in := rpcIncoming{
		caller:  caller,
		id:      req.GetId(),
		method:  req.GetMethod(),
		payload: req.GetPayload(),
		timeout: time.Duration(req.GetResponseTimeoutMs()) * time.Millisecond,
		version: int(req.GetVersion()),
	}
	if in.id == "" {
		r.countMalformed()
		return
	}
	r.mu.Lock()
	p, known := r.remotes[caller]
	r.mu.Unlock()
	in.streamReply = p.clientProtocol >= 1
	// LiveKit's server API (RoomService.PerformRpc) sends its requests as
	// a participant, not in the room, whose identity is the request id;
	// the answers go to that identity.
	in.fromServer = !known && (caller == "" || caller == in.id)
	switch {
	case in.version != 1:
		in.refuse = NewRpcError(RpcUnsupportedVersion, "", "")
	case len(in.payload) > MaxRpcPayload:
		in.refuse = NewRpcError(RpcRequestPayloadTooLarge, "", "")
	}
	r.serveRpc(in)
}

// onRpcRequestStream handles a v2 request, a whole text stream; r.mu held.
func (r *Room) onRpcRequestStream(m chunk.Received) {
	a := m.Attributes
	in := rpcIncoming{
		caller:      m.SenderIdentity,
		id:          a[attrRpcID],
		method:      a[attrRpcMethod],
		payload:     string(m.Payload),
		streamReply: true,
	}
	if in.id == "" {
		r.malform++
		return
	}
	ms, err1 := strconv.ParseUint(a[attrRpcTimeout], 10, 32)
	v, err2 := strconv.Atoi(a[attrRpcVersion])
	switch {
	case in.method == "" || err1 != nil || err2 != nil:
		in.refuse = NewRpcError(RpcApplicationError, "RPC data stream malformed", "")
	case v != 2:
		in.refuse = NewRpcError(RpcUnsupportedVersion, "", "")
	}
	in.timeout = time.Duration(ms) * time.Millisecond
	in.version = v
	r.serveRpc(in)
}

// serveRpc starts the handling of a request on a goroutine of its own. It
// never blocks: the receive path calls it.
func (r *Room) serveRpc(in rpcIncoming) {
	s := &r.rpc
	s.mu.Lock()
	h := s.handlers[in.method]
	s.mu.Unlock()
	if in.refuse == nil && h == nil {
		in.refuse = NewRpcError(RpcUnsupportedMethod, "", "")
	}
	if in.refuse == nil {
		select {
		case s.slots <- struct{}{}:
		default:
			s.busy.Add(1)
			in.refuse = NewRpcError(RpcApplicationError, "callstate: too many RPC calls in progress", "")
		}
	}
	if in.refuse != nil {
		select {
		case s.refusals <- struct{}{}:
		default:
			s.dropped.Add(1)
			return
		}
		go func() {
			defer func() { <-s.refusals }()
			ctx, cancel := context.WithTimeout(r.life, rpcReplyTimeout)
			defer cancel()
			if r.sendRpcAck(ctx, in) == nil {
				_ = r.sendRpcError(ctx, in, in.refuse)
			}
		}()
		return
	}
	timeout := in.timeout
	if timeout <= 0 {
		timeout = DefaultRpcTimeout
	}
	leave, cancelLeave := context.WithCancelCause(r.life)
	ctx, cancel := context.WithTimeout(leave, timeout)
	s.mu.Lock()
	if s.serving[in.caller] == nil {
		s.serving[in.caller] = map[string]context.CancelCauseFunc{}
	}
	s.serving[in.caller][in.id] = cancelLeave
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			if m := s.serving[in.caller]; m != nil {
				delete(m, in.id)
				if len(m) == 0 {
					delete(s.serving, in.caller)
				}
			}
			s.mu.Unlock()
			cancel()
			cancelLeave(nil)
			<-s.slots
		}()
		rctx, rcancel := context.WithTimeout(r.life, rpcReplyTimeout)
		defer rcancel()
		if r.sendRpcAck(rctx, in) != nil {
			return
		}
		caller := in.caller
		if in.fromServer {
			caller = ""
		}
		payload, err := h(ctx, RpcInvocation{
			RequestID:       in.id,
			CallerIdentity:  caller,
			Method:          in.method,
			Payload:         in.payload,
			ResponseTimeout: in.timeout,
		})
		if ctx.Err() != nil {
			// The caller has given up, left, or the Room is ending.
			return
		}
		rctx2, rcancel2 := context.WithTimeout(r.life, rpcReplyTimeout)
		defer rcancel2()
		if err != nil {
			var re *RpcError
			if !errors.As(err, &re) {
				re = NewRpcError(RpcApplicationError, "", "")
			}
			_ = r.sendRpcError(rctx2, in, re)
			return
		}
		_ = r.sendRpcAnswer(rctx2, in, payload)
	}()
}

// rpcDests are the destinations of a reply to caller: none for the server
// API, whose requests carry no caller.
func rpcDests(caller string) []string {
	if caller == "" {
		return nil
	}
	return []string{caller}
}

// sendToCaller sends the RPC packet pkt to in's caller. The destination is
// not checked: LiveKit's server API calls as a participant that is not in
// the room (see onRpcRequestPacket).
func (r *Room) sendToCaller(ctx context.Context, op string, in rpcIncoming, pkt *lkpb.DataPacket) error {
	if err := r.preflight(op, nil); err != nil {
		return err
	}
	pkt.DestinationIdentities = rpcDests(in.caller)
	return r.sendPacket(ctx, op, pkt)
}

func (r *Room) sendRpcAck(ctx context.Context, in rpcIncoming) error {
	return r.sendToCaller(ctx, "RPC acknowledgement", in, &lkpb.DataPacket{Value: &lkpb.DataPacket_RpcAck{RpcAck: &lkpb.RpcAck{RequestId: in.id}}})
}

func (r *Room) sendRpcError(ctx context.Context, in rpcIncoming, e *RpcError) error {
	return r.sendToCaller(ctx, "RPC answer", in, &lkpb.DataPacket{Value: &lkpb.DataPacket_RpcResponse{RpcResponse: &lkpb.RpcResponse{
		RequestId: in.id,
		Value: &lkpb.RpcResponse_Error{Error: &lkpb.RpcError{
			Code:    uint32(e.Code),
			Message: truncateUTF8(e.Message, maxRpcErrorMessage),
			Data:    truncateUTF8(e.Data, maxRpcErrorData),
		}},
	}}})
}

func (r *Room) sendRpcAnswer(ctx context.Context, in rpcIncoming, payload string) error {
	const op = "RPC answer"
	if in.streamReply {
		// A caller that has just joined may call before the server has
		// announced it; the stream is sent once it is known.
		if _, err := r.WaitForParticipant(ctx, in.caller); err != nil {
			return err
		}
		err := r.send(ctx, op, chunk.Message{
			Topic:        rpcResponseTopic,
			Payload:      []byte(payload),
			Destinations: rpcDests(in.caller),
			Reliable:     true,
			Stream:       true,
			Text:         true,
			Attributes:   map[string]string{attrRpcID: in.id},
		})
		switch {
		case errors.Is(err, ErrTooLarge):
			return r.sendRpcError(ctx, in, NewRpcError(RpcResponsePayloadTooLarge, "", ""))
		case errors.Is(err, ErrInvalidArgument):
			return r.sendRpcError(ctx, in, NewRpcError(RpcApplicationError, "callstate: the answer is not UTF-8 text", ""))
		}
		return err
	}
	if len(payload) > MaxRpcPayload {
		return r.sendRpcError(ctx, in, NewRpcError(RpcResponsePayloadTooLarge, "", ""))
	}
	return r.sendToCaller(ctx, op, in, &lkpb.DataPacket{Value: &lkpb.DataPacket_RpcResponse{RpcResponse: &lkpb.RpcResponse{
		RequestId: in.id,
		Value:     &lkpb.RpcResponse_Payload{Payload: payload},
	}}})
}

// onRpcResponsePacket handles a v1 answer (or any error answer).
func (r *Room) onRpcResponsePacket(pkt *lkpb.DataPacket, resp *lkpb.RpcResponse) {
	from := pkt.GetParticipantIdentity()
	res := rpcResult{payload: resp.GetPayload()}
	if e := resp.GetError(); e != nil {
		res = rpcResult{err: &RpcError{Code: RpcErrorCode(e.GetCode()), Message: e.GetMessage(), Data: e.GetData()}}
	}
	r.rpc.finishCall(resp.GetRequestId(), from, res)
}

// onRpcResponseStream handles a v2 answer, a whole text stream.
func (r *Room) onRpcResponseStream(m chunk.Received) {
	id := m.Attributes[attrRpcID]
	if id == "" {
		r.malform++
		return
	}
	r.rpc.finishCall(id, m.SenderIdentity, rpcResult{payload: string(m.Payload)})
}

// truncateUTF8 cuts s to at most n bytes, at a character boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (r *Room) countMalformed() {
	r.mu.Lock()
	r.malform++
	r.mu.Unlock()
}
