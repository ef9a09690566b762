package callstate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/redact"
	"github.com/callstate/callstate/internal/serverurl"
)

// Limits of the server API client.
const (
	// serviceTokenValidity is the lifetime of the token minted for each
	// server API call.
	serviceTokenValidity = 10 * time.Minute
	// maxResponseBody bounds the body of a successful response.
	maxResponseBody = 64 << 20
	// maxErrorBody bounds the body of an error response.
	maxErrorBody = 64 << 10
	// defaultAttempts is how many times an idempotent call is made at
	// most, like LiveKit's own server SDK.
	defaultAttempts = 3
	// retryBackoff is the pause before the first retry; it doubles for the
	// next.
	retryBackoff = 200 * time.Millisecond
)

// RequestIDHeader is the HTTP header carrying the id of a server API call,
// LiveKit's name for it. Every attempt of one call carries the same id, so
// that the server can recognise a retried request.
const RequestIDHeader = "X-Livekit-Request-Id"

// idempotentMethods are the server API methods that are retried after a
// failure that may have happened before the server acted: repeating them
// has the effect of doing them once. Reads are idempotent; CreateRoom
// returns the existing room; the updates set values (attributes merge the
// same keys again); SendData carries a nonce by which the server drops a
// repeated packet. DeleteRoom and RemoveParticipant are not retried (a
// repeat answers not_found after the first succeeded), nor are
// ForwardParticipant, MoveParticipant and PerformRpc (a repeat acts
// twice, or runs the participant's handler twice).
var idempotentMethods = map[string]bool{
	"CreateRoom":          true,
	"ListRooms":           true,
	"ListParticipants":    true,
	"GetParticipant":      true,
	"UpdateParticipant":   true,
	"UpdateRoomMetadata":  true,
	"MutePublishedTrack":  true,
	"UpdateSubscriptions": true,
	"SendData":            true,
}

// RoomService is a client of a LiveKit server's API (LiveKit's RoomService):
// it creates, lists and deletes rooms, and lists, updates and removes
// participants, changes room metadata and sends data, from outside the room.
//
// A RoomService made with API credentials (NewRoomService) signs a
// short-lived token for every call, with exactly the grants the call needs.
// One made with a fixed token (NewRoomServiceWithToken) sends that token, so
// its calls succeed only as far as the token's grants allow.
//
// The methods addressed to one participant's session (MutePublishedTrack,
// UpdateSubscriptions, PerformRpc) are routed by LiveKit to that session:
// for an identity that is not in the room, nobody answers and, after about
// 3 s, the call fails with an error matching ErrServerUnreachable (Code
// "unavailable") rather than ErrNotFound.
//
// A RoomService is safe for concurrent use. Every call takes a context that
// bounds it, retries included.
//
// Calls whose repetition has the effect of one call (the reads, CreateRoom,
// the updates, MutePublishedTrack, UpdateSubscriptions, and SendData, which
// the server deduplicates by its nonce) are made again, up to 3 times in
// all, when no answer from LiveKit arrived: a connection failure, or an
// HTTP 502, 503 or 504 that is not a Twirp error (a proxy's). An answer
// from LiveKit itself is final. Every attempt of a call carries the same
// RequestIDHeader. DeleteRoom, RemoveParticipant, ForwardParticipant,
// MoveParticipant and PerformRpc are made once.
type RoomService struct {
	base   string // http(s)://host[:port][/prefix], without a trailing slash
	key    string
	secret string
	token  string
	client *http.Client
	// maxBody bounds the body of a successful response.
	maxBody int
	// attempts is how many times an idempotent call is made at most.
	attempts int
}

// RoomServiceOptions configures NewRoomService and NewRoomServiceWithToken;
// nil or the zero value means the defaults.
type RoomServiceOptions struct {
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Attempts is how many times an idempotent call (see RoomService) is
	// made at most when the server cannot be reached; zero means 3, and 1
	// means no retry.
	Attempts int
}

// NewRoomService returns a client of the server API of the LiveKit server at
// serverURL, authenticated with an API key and secret. serverURL may be the
// URL participants join (ws:// or wss://) or the HTTP one (http:// or
// https://); opts may be nil.
//
// It returns an error wrapping ErrInvalidArgument for a malformed URL or
// empty credentials. It makes no request.
func NewRoomService(serverURL, apiKey, apiSecret string, opts *RoomServiceOptions) (*RoomService, error) {
	if apiKey == "" || apiSecret == "" {
		return nil, fmt.Errorf("%w: NewRoomService: empty API key or secret", ErrInvalidArgument)
	}
	s, err := newRoomService(serverURL, opts)
	if err != nil {
		return nil, err
	}
	s.key, s.secret = apiKey, apiSecret
	return s, nil
}

// NewRoomServiceWithToken returns a client of the server API of the LiveKit
// server at serverURL that sends token with every call. It suits a
// participant that holds only its own token: with the roomAdmin grant for its
// room, such a participant may, for example, update the room's metadata.
// Calls the token does not allow fail with an error matching
// ErrNotPermitted.
//
// It returns an error wrapping ErrInvalidArgument for a malformed URL or an
// empty token. It makes no request.
func NewRoomServiceWithToken(serverURL, token string, opts *RoomServiceOptions) (*RoomService, error) {
	if strings.TrimSpace(token) == "" {
		return nil, fmt.Errorf("%w: NewRoomServiceWithToken: empty token", ErrInvalidArgument)
	}
	s, err := newRoomService(serverURL, opts)
	if err != nil {
		return nil, err
	}
	s.token = token
	return s, nil
}

func newRoomService(serverURL string, opts *RoomServiceOptions) (*RoomService, error) {
	base, err := httpBaseURL(serverURL)
	if err != nil {
		return nil, err
	}
	s := &RoomService{base: base, client: http.DefaultClient, maxBody: maxResponseBody, attempts: defaultAttempts}
	if opts != nil {
		if opts.HTTPClient != nil {
			s.client = opts.HTTPClient
		}
		if opts.Attempts > 0 {
			s.attempts = opts.Attempts
		}
	}
	return s, nil
}

// httpBaseURL converts a server URL to the HTTP base of its API.
func httpBaseURL(serverURL string) (string, error) {
	u, err := parseServerURL(serverURL)
	if err != nil {
		return "", err
	}
	_, base := serverurl.Bases(u)
	return base, nil
}

// CreateRoomOptions describe a room to create.
type CreateRoomOptions struct {
	// Name is the room's name. Required.
	Name string
	// EmptyTimeout is how long the room lives while nobody has joined it;
	// zero means the server's default. It is rounded up to whole seconds.
	EmptyTimeout time.Duration
	// DepartureTimeout is how long the room lives after the last participant
	// left; zero means the server's default. It is rounded up to whole
	// seconds.
	DepartureTimeout time.Duration
	// MaxParticipants limits the number of participants; zero means no
	// limit.
	MaxParticipants int
	// Metadata is the room's initial metadata (session data is its JSON
	// object view).
	Metadata string
	// NodeID, on a LiveKit cluster, is the id of the node to host the
	// room, instead of the one LiveKit would select; the room stays there
	// while that node is alive. Empty lets LiveKit choose (the usual
	// case: LiveKit documents it as an override for debugging).
	NodeID string
}

// ParticipantUpdate describes changes to a participant. Nil fields are left
// unchanged.
//
// LiveKit ignores empty strings: Metadata and Name cannot be cleared to "".
// Attributes are merged into the participant's; an attribute set to ""
// is deleted.
type ParticipantUpdate struct {
	// Metadata is the participant's new metadata.
	Metadata *string
	// Name is the participant's new display name.
	Name *string
	// Attributes are merged into the participant's attributes.
	Attributes map[string]string
	// Permissions replace all of the participant's permissions.
	Permissions *Permissions
}

// CreateRoom creates a room, or returns the existing room of that name. It
// needs the roomCreate grant.
func (s *RoomService) CreateRoom(ctx context.Context, o CreateRoomOptions) (RoomInfo, error) {
	const method = "CreateRoom"
	if o.Name == "" {
		return RoomInfo{}, invalidArg(method, "empty room name")
	}
	empty, err := durationSeconds(method, "EmptyTimeout", o.EmptyTimeout)
	if err != nil {
		return RoomInfo{}, err
	}
	departure, err := durationSeconds(method, "DepartureTimeout", o.DepartureTimeout)
	if err != nil {
		return RoomInfo{}, err
	}
	if o.MaxParticipants < 0 || int64(o.MaxParticipants) > math.MaxUint32 {
		return RoomInfo{}, invalidArg(method, fmt.Sprintf("MaxParticipants %d out of range", o.MaxParticipants))
	}
	req := &lkpb.CreateRoomRequest{
		Name:             o.Name,
		EmptyTimeout:     empty,
		DepartureTimeout: departure,
		MaxParticipants:  uint32(o.MaxParticipants),
		Metadata:         o.Metadata,
		NodeId:           o.NodeID,
	}
	var resp lkpb.Room
	if err := s.call(ctx, method, Grants{RoomCreate: true}, req, &resp); err != nil {
		return RoomInfo{}, err
	}
	return roomInfoFromProto(&resp), nil
}

// ListRooms lists the rooms with the given names, or all active rooms when
// no name is given. It needs the roomList grant.
func (s *RoomService) ListRooms(ctx context.Context, names ...string) ([]RoomInfo, error) {
	var resp lkpb.ListRoomsResponse
	if err := s.call(ctx, "ListRooms", Grants{RoomList: true}, &lkpb.ListRoomsRequest{Names: names}, &resp); err != nil {
		return nil, err
	}
	rooms := make([]RoomInfo, 0, len(resp.GetRooms()))
	for _, r := range resp.GetRooms() {
		rooms = append(rooms, roomInfoFromProto(r))
	}
	return rooms, nil
}

// DeleteRoom deletes a room, disconnecting its participants. It needs the
// roomCreate grant.
func (s *RoomService) DeleteRoom(ctx context.Context, room string) error {
	const method = "DeleteRoom"
	if room == "" {
		return invalidArg(method, "empty room name")
	}
	return s.call(ctx, method, Grants{RoomCreate: true}, &lkpb.DeleteRoomRequest{Room: room}, &lkpb.DeleteRoomResponse{})
}

// ListParticipants lists the participants of a room. It needs the roomAdmin
// grant for the room.
func (s *RoomService) ListParticipants(ctx context.Context, room string) ([]Participant, error) {
	const method = "ListParticipants"
	if room == "" {
		return nil, invalidArg(method, "empty room name")
	}
	var resp lkpb.ListParticipantsResponse
	if err := s.call(ctx, method, adminGrants(room), &lkpb.ListParticipantsRequest{Room: room}, &resp); err != nil {
		return nil, err
	}
	ps := make([]Participant, 0, len(resp.GetParticipants()))
	for _, pi := range resp.GetParticipants() {
		ps = append(ps, participantFromInfo(pi))
	}
	return ps, nil
}

// GetParticipant returns one participant of a room; an error matching
// ErrNotFound when there is no such participant. It needs the roomAdmin
// grant for the room.
func (s *RoomService) GetParticipant(ctx context.Context, room, identity string) (Participant, error) {
	const method = "GetParticipant"
	if err := checkRoomIdentity(method, room, identity); err != nil {
		return Participant{}, err
	}
	var resp lkpb.ParticipantInfo
	if err := s.call(ctx, method, adminGrants(room), &lkpb.RoomParticipantIdentity{Room: room, Identity: identity}, &resp); err != nil {
		return Participant{}, err
	}
	return participantFromInfo(&resp), nil
}

// RemoveParticipant disconnects a participant from a room. It needs the
// roomAdmin grant for the room.
func (s *RoomService) RemoveParticipant(ctx context.Context, room, identity string) error {
	const method = "RemoveParticipant"
	if err := checkRoomIdentity(method, room, identity); err != nil {
		return err
	}
	return s.call(ctx, method, adminGrants(room), &lkpb.RoomParticipantIdentity{Room: room, Identity: identity}, &lkpb.RemoveParticipantResponse{})
}

// UpdateParticipant changes a participant's metadata, name, attributes or
// permissions, and returns the participant as updated. It needs the
// roomAdmin grant for the room.
func (s *RoomService) UpdateParticipant(ctx context.Context, room, identity string, u ParticipantUpdate) (Participant, error) {
	const method = "UpdateParticipant"
	if err := checkRoomIdentity(method, room, identity); err != nil {
		return Participant{}, err
	}
	req := &lkpb.UpdateParticipantRequest{Room: room, Identity: identity, Attributes: u.Attributes}
	if u.Metadata != nil {
		req.Metadata = *u.Metadata
	}
	if u.Name != nil {
		req.Name = *u.Name
	}
	if p := u.Permissions; p != nil {
		req.Permission = &lkpb.ParticipantPermission{
			CanSubscribe:      p.CanSubscribe,
			CanPublish:        p.CanPublish,
			CanPublishData:    p.CanPublishData,
			CanUpdateMetadata: p.CanUpdateMetadata,
			Hidden:            p.Hidden,
		}
	}
	var resp lkpb.ParticipantInfo
	if err := s.call(ctx, method, adminGrants(room), req, &resp); err != nil {
		return Participant{}, err
	}
	return participantFromInfo(&resp), nil
}

// UpdateRoomMetadata sets a room's metadata, the raw form of its session
// data, and returns the room as updated. Participants see the change as a
// room update. It needs the roomAdmin grant for the room.
func (s *RoomService) UpdateRoomMetadata(ctx context.Context, room, metadata string) (RoomInfo, error) {
	const method = "UpdateRoomMetadata"
	if room == "" {
		return RoomInfo{}, invalidArg(method, "empty room name")
	}
	var resp lkpb.Room
	if err := s.call(ctx, method, adminGrants(room), &lkpb.UpdateRoomMetadataRequest{Room: room, Metadata: metadata}, &resp); err != nil {
		return RoomInfo{}, err
	}
	return roomInfoFromProto(&resp), nil
}

// SendData sends payload to the participants of a room as one data packet,
// reliable by default, from no participant: receivers see an empty sender
// identity, with the options of Room.PublishData (nil: reliable, to
// everyone, no topic). It needs the roomAdmin grant for the room.
//
// The server sends the payload as a single packet, so it should fit one:
// about 15 KiB for reliable data, about 1.3 KiB for lossy data. Topics
// reserved by callstate are refused with ErrInvalidArgument.
//
// LiveKit accepts data for recipients that are not in the room, and answers
// data for a room that does not exist, after a few seconds, with
// "unavailable" (ErrServerUnreachable).
func (s *RoomService) SendData(ctx context.Context, room string, payload []byte, opts *PublishOptions) error {
	const method = "SendData"
	if room == "" {
		return invalidArg(method, "empty room name")
	}
	var o dataOptions
	if opts != nil {
		o = dataOptions{kind: opts.Kind, topic: opts.Topic, to: opts.To}
	}
	if isReservedTopic(o.topic) {
		return invalidArg(method, fmt.Sprintf("topic %q is reserved by callstate", o.topic))
	}
	return s.sendData(ctx, room, payload, o)
}

// sendData sends a data packet; the topic is not checked.
func (s *RoomService) sendData(ctx context.Context, room string, payload []byte, o dataOptions) error {
	const method = "SendData"
	if room == "" {
		return invalidArg(method, "empty room name")
	}
	// LiveKit's server SDKs send a random UUID as the nonce that lets
	// receivers drop a packet the server delivered twice.
	nonce := uuid.New()
	req := &lkpb.SendDataRequest{
		Room:                  room,
		Data:                  payload,
		Kind:                  lkpb.DataPacket_RELIABLE,
		DestinationIdentities: o.to,
		Nonce:                 nonce[:],
	}
	if o.kind == Lossy {
		req.Kind = lkpb.DataPacket_LOSSY
	}
	if o.topic != "" {
		req.Topic = &o.topic
	}
	return s.call(ctx, method, adminGrants(room), req, &lkpb.SendDataResponse{})
}

func adminGrants(room string) Grants { return Grants{Room: room, RoomAdmin: true} }

func invalidArg(method, msg string) error {
	return fmt.Errorf("%w: RoomService.%s: %s", ErrInvalidArgument, method, msg)
}

func checkRoomIdentity(method, room, identity string) error {
	if room == "" {
		return invalidArg(method, "empty room name")
	}
	if identity == "" {
		return invalidArg(method, "empty identity")
	}
	return nil
}

// durationSeconds converts a timeout to whole seconds, rounding up.
func durationSeconds(method, field string, d time.Duration) (uint32, error) {
	if d < 0 {
		return 0, invalidArg(method, fmt.Sprintf("negative %s %v", field, d))
	}
	secs := (d + time.Second - 1) / time.Second
	if secs > math.MaxUint32 {
		return 0, invalidArg(method, fmt.Sprintf("%s %v out of range", field, d))
	}
	return uint32(secs), nil
}

// call makes one Twirp call: it POSTs req in protobuf to the method's path
// with a bearer token, and decodes the answer into resp or into a
// *ServerError. Idempotent methods are tried again after a failure that
// left the server's decision unknown.
func (s *RoomService) call(ctx context.Context, method string, grants Grants, req, resp proto.Message) error {
	token := s.token
	if token == "" {
		var err error
		token, err = NewToken(s.key, s.secret, Claims{Grants: grants, ValidFor: serviceTokenValidity})
		if err != nil {
			return err
		}
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("%w: RoomService.%s: %v", ErrInvalidArgument, method, err)
	}
	id := newRequestID()
	attempts := 1
	if idempotentMethods[method] {
		attempts = s.attempts
	}
	backoff := retryBackoff
	for attempt := 1; ; attempt++ {
		retry, err := s.attempt(ctx, method, token, id, body, resp)
		if !retry || attempt >= attempts {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff *= 2
	}
}

// newRequestID returns a random id for RequestIDHeader.
func newRequestID() string { return uuid.NewString() }

// attempt makes one HTTP request of a call; retry reports whether the
// failure leaves the server's decision unknown.
func (s *RoomService) attempt(ctx context.Context, method, token, id string, body []byte, resp proto.Message) (retry bool, err error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/twirp/livekit.RoomService/"+method, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("%w: RoomService.%s: %v", ErrInvalidArgument, method, err)
	}
	hreq.Header.Set("Content-Type", "application/protobuf")
	hreq.Header.Set("Accept", "application/protobuf")
	hreq.Header.Set("Authorization", "Bearer "+token)
	hreq.Header.Set(RequestIDHeader, id)
	hresp, err := s.client.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("callstate: RoomService.%s: %w", method, ctx.Err())
		}
		return true, &ServerError{Method: method, Message: redactTokens(err.Error()), Err: redact.Error(err)}
	}
	defer hresp.Body.Close()

	if hresp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(hresp.Body, maxErrorBody))
		var te twirpError
		fromLiveKit := json.Unmarshal(b, &te) == nil && te.Code != ""
		switch hresp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			retry = !fromLiveKit
		}
		return retry, serverError(method, hresp.StatusCode, b)
	}
	b, err := io.ReadAll(io.LimitReader(hresp.Body, int64(s.maxBody)+1))
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("callstate: RoomService.%s: %w", method, ctx.Err())
		}
		// The server acted: the answer was on its way.
		return false, &ServerError{Method: method, Message: "reading the response: " + redactTokens(err.Error()), Err: redact.Error(err)}
	}
	if len(b) > s.maxBody {
		return false, &SizeError{What: "RoomService." + method + " response", Size: len(b), Limit: s.maxBody}
	}
	if err := proto.Unmarshal(b, resp); err != nil {
		return false, &ServerError{Method: method, HTTPStatus: hresp.StatusCode,
			Message: fmt.Sprintf("unreadable response (Content-Type %q): %v", hresp.Header.Get("Content-Type"), err)}
	}
	return false, nil
}

// ServerError is an error answered by the server API, or the failure to
// reach it. It matches, with errors.Is, the sentinel for its Code:
//
//	not_found                          ErrNotFound
//	permission_denied                  ErrNotPermitted
//	unauthenticated                    ErrNotPermitted and ErrBadToken
//	invalid_argument, malformed,
//	out_of_range                       ErrInvalidArgument
//	resource_exhausted                 ErrLimitExceeded
//	unavailable, or no answer          ErrServerUnreachable
//	anything else                      ErrRejected
//
// LiveKit answers unauthenticated both for a token it does not accept and
// for a token that lacks a grant the call needs.
type ServerError struct {
	// Method is the server API method, for example "DeleteRoom".
	Method string
	// Code is the server's (Twirp) error code, for example "not_found";
	// empty when the server could not be reached or its answer could not
	// be read.
	Code string
	// Message is the server's explanation, or the transport error. Access
	// tokens are removed from it.
	Message string
	// HTTPStatus is the HTTP status of the answer; 0 when the server could
	// not be reached or the connection broke before the whole answer
	// arrived.
	HTTPStatus int
	// Err is the transport error when the server could not be reached.
	Err error
}

func (e *ServerError) Error() string {
	var sb strings.Builder
	sb.WriteString("callstate: RoomService.")
	sb.WriteString(e.Method)
	switch {
	case e.HTTPStatus == 0:
		sb.WriteString(": server unreachable")
	case e.Code != "":
		sb.WriteString(": ")
		sb.WriteString(e.Code)
	}
	if e.Message != "" {
		sb.WriteString(": ")
		sb.WriteString(e.Message)
	}
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&sb, " (HTTP %d)", e.HTTPStatus)
	}
	return sb.String()
}

// Is reports whether target is the sentinel error matching e's Code.
func (e *ServerError) Is(target error) bool {
	if e.HTTPStatus == 0 {
		return target == ErrServerUnreachable
	}
	switch e.Code {
	case "not_found":
		return target == ErrNotFound
	case "permission_denied":
		return target == ErrNotPermitted
	case "unauthenticated":
		return target == ErrNotPermitted || target == ErrBadToken
	case "invalid_argument", "malformed", "out_of_range":
		return target == ErrInvalidArgument
	case "resource_exhausted":
		return target == ErrLimitExceeded
	case "unavailable":
		return target == ErrServerUnreachable
	}
	return target == ErrRejected
}

// Unwrap returns the transport error, if any.
func (e *ServerError) Unwrap() error { return e.Err }

// twirpError is the JSON body of a Twirp error.
type twirpError struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
}

// serverError builds the error for a non-200 answer. A body that is not a
// Twirp error (LiveKit's authentication refusals are plain text, proxies
// send HTML) is kept as the message, and the code is derived from the HTTP
// status.
func serverError(method string, status int, body []byte) *ServerError {
	e := &ServerError{Method: method, HTTPStatus: status}
	var te twirpError
	if json.Unmarshal(body, &te) == nil && te.Code != "" {
		e.Code = te.Code
		// LiveKit's messages repeat a generic Twirp prefix.
		e.Message = twirpPrefix.ReplaceAllString(te.Msg, "")
	} else {
		e.Code = codeForStatus(status)
		e.Message = strings.TrimSpace(strings.ToValidUTF8(string(body), "\uFFFD"))
		if len(e.Message) > 512 {
			e.Message = strings.ToValidUTF8(e.Message[:512], "") + "..."
		}
	}
	e.Message = redactTokens(e.Message)
	return e
}

// codeForStatus maps an HTTP status to a Twirp code, as Twirp does.
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_argument"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "permission_denied"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusRequestTimeout:
		return "deadline_exceeded"
	case http.StatusConflict:
		return "aborted"
	case http.StatusPreconditionFailed:
		return "failed_precondition"
	case http.StatusTooManyRequests:
		return "resource_exhausted"
	case http.StatusNotImplemented:
		return "unimplemented"
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return "unavailable"
	}
	return "internal"
}

var twirpPrefix = regexp.MustCompile(`^twirp error [a-z_]+: `)

// redactTokens removes access tokens from a message, so that errors can be
// logged safely (LiveKit quotes the token it refuses).
func redactTokens(s string) string { return redact.String(s) }

// MutePublishedTrack mutes (or unmutes) a track a participant publishes and
// returns the track as updated. It needs the roomAdmin grant for the room.
//
// An unknown track answers an error matching ErrNotFound. LiveKit refuses
// to unmute, with Code "failed_precondition" (ErrRejected), unless its
// configuration allows remote unmuting (room.enable_remote_unmute).
func (s *RoomService) MutePublishedTrack(ctx context.Context, room, identity, trackSID string, muted bool) (TrackInfo, error) {
	const method = "MutePublishedTrack"
	if err := checkRoomIdentity(method, room, identity); err != nil {
		return TrackInfo{}, err
	}
	if trackSID == "" {
		return TrackInfo{}, invalidArg(method, "empty track SID")
	}
	var resp lkpb.MuteRoomTrackResponse
	req := &lkpb.MuteRoomTrackRequest{Room: room, Identity: identity, TrackSid: trackSID, Muted: muted}
	if err := s.call(ctx, method, adminGrants(room), req, &resp); err != nil {
		return TrackInfo{}, err
	}
	// LiveKit answers success without a track when the participant
	// publishes no track of that SID.
	if resp.GetTrack() == nil {
		return TrackInfo{}, fmt.Errorf("%w: RoomService.%s: participant %q publishes no track %q", ErrNotFound, method, identity, trackSID)
	}
	return *trackFromProto(resp.GetTrack()), nil
}

// UpdateSubscriptions subscribes a participant to tracks, or unsubscribes
// it from them, on its behalf. It needs the roomAdmin grant for the room.
// LiveKit ignores track SIDs it does not know.
func (s *RoomService) UpdateSubscriptions(ctx context.Context, room, identity string, trackSIDs []string, subscribe bool) error {
	const method = "UpdateSubscriptions"
	if err := checkRoomIdentity(method, room, identity); err != nil {
		return err
	}
	if len(trackSIDs) == 0 {
		return invalidArg(method, "no track SID")
	}
	req := &lkpb.UpdateSubscriptionsRequest{Room: room, Identity: identity, TrackSids: trackSIDs, Subscribe: subscribe}
	return s.call(ctx, method, adminGrants(room), req, &lkpb.UpdateSubscriptionsResponse{})
}

// ForwardParticipant makes a participant of room also appear in
// destinationRoom, publishing its tracks there, while it stays in room. It
// needs the roomAdmin grant for room and destinationRoom as the
// destinationRoom grant.
//
// The open-source LiveKit server (v1.13.5 at least) does not implement it:
// it answers an error matching ErrRejected with Code "unknown" (HTTP 500)
// and the message "not implemented". LiveKit Cloud does.
func (s *RoomService) ForwardParticipant(ctx context.Context, room, identity, destinationRoom string) error {
	const method = "ForwardParticipant"
	if err := checkMove(method, room, identity, destinationRoom); err != nil {
		return err
	}
	req := &lkpb.ForwardParticipantRequest{Room: room, Identity: identity, DestinationRoom: destinationRoom}
	return s.call(ctx, method, moveGrants(room, destinationRoom), req, &lkpb.ForwardParticipantResponse{})
}

// MoveParticipant moves a participant from room to destinationRoom without
// it reconnecting. It needs the same grants as ForwardParticipant, and the
// open-source server does not implement it either (same error).
func (s *RoomService) MoveParticipant(ctx context.Context, room, identity, destinationRoom string) error {
	const method = "MoveParticipant"
	if err := checkMove(method, room, identity, destinationRoom); err != nil {
		return err
	}
	req := &lkpb.MoveParticipantRequest{Room: room, Identity: identity, DestinationRoom: destinationRoom}
	return s.call(ctx, method, moveGrants(room, destinationRoom), req, &lkpb.MoveParticipantResponse{})
}

func checkMove(method, room, identity, destination string) error {
	if err := checkRoomIdentity(method, room, identity); err != nil {
		return err
	}
	switch destination {
	case "":
		return invalidArg(method, "empty destination room")
	case room:
		return invalidArg(method, "the destination room is the participant's room")
	}
	return nil
}

func moveGrants(room, destination string) Grants {
	g := adminGrants(room)
	g.DestinationRoom = destination
	return g
}

// RpcOptions tune RoomService.PerformRpc and Room.PerformRpc.
type RpcOptions struct {
	// ResponseTimeout is how long the caller waits for the handler's
	// answer; zero means the default: LiveKit's 10 s for the server API,
	// DefaultRpcTimeout (15 s, livekit-client's) for Room.PerformRpc. It is
	// rounded up to whole milliseconds.
	ResponseTimeout time.Duration
}

// PerformRpc calls method on the participant destination of room, as the
// server (LiveKit relays it as an RPC request from the server), and returns
// the handler's answer. It needs the roomAdmin grant for the room.
//
// A failure of the call itself is an *RpcError: LiveKit's codes (the
// recipient did not acknowledge within 2 s: RpcConnectionTimeout; it did
// not answer in time: RpcResponseTimeout; a payload over MaxRpcPayload:
// RpcRequestPayloadTooLarge; ...) or the code and message the handler
// answered. A destination not in the room is a *ServerError matching
// ErrServerUnreachable (see RoomService). A destination that joined a
// moment ago, whose data channel LiveKit has not registered yet, is called
// again shortly after (LiveKit refuses such a call before delivering it).
// ctx should allow for ResponseTimeout.
func (s *RoomService) PerformRpc(ctx context.Context, room, destination, method, payload string, o RpcOptions) (string, error) {
	const name = "PerformRpc"
	if err := checkRoomIdentity(name, room, destination); err != nil {
		return "", err
	}
	if method == "" {
		return "", invalidArg(name, "empty method")
	}
	timeout, err := millis("RoomService."+name, "ResponseTimeout", o.ResponseTimeout)
	if err != nil {
		return "", err
	}
	req := &lkpb.PerformRpcRequest{Room: room, DestinationIdentity: destination, Method: method, Payload: payload, ResponseTimeoutMs: timeout}
	var resp lkpb.PerformRpcResponse
	// A participant that joined a moment ago may not have its data
	// channel registered on the server yet: LiveKit then refuses the call
	// before sending anything ("data channel is not available"), so it is
	// safe to send it again, a few times, shortly after.
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.call(ctx, name, adminGrants(room), req, &resp)
		if err == nil {
			return resp.GetPayload(), nil
		}
		var se *ServerError
		if errors.As(err, &se) && se.HTTPStatus != 0 {
			if re, ok := parseRpcErrorText(se.Message); ok {
				return "", re
			}
			if strings.Contains(se.Message, rpcNoDataChannel) && attempt < rpcNoChannelAttempts {
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
					backoff *= 2
					continue
				case <-ctx.Done():
					t.Stop()
				}
			}
		}
		return "", err
	}
}

// LiveKit's refusal of an RPC to a participant whose data channel it has
// not registered yet, and how many times PerformRpc tries (50 ms, doubling:
// about 1.5 s in all).
const (
	rpcNoDataChannel     = "data channel is not available"
	rpcNoChannelAttempts = 6
)
