package callstate

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/callstate/callstate/internal/lkpb"
)

// WebhookEventType names a webhook event, as LiveKit spells it.
type WebhookEventType string

// The webhook events LiveKit posts.
const (
	WebhookRoomStarted                  WebhookEventType = "room_started"
	WebhookRoomFinished                 WebhookEventType = "room_finished"
	WebhookParticipantJoined            WebhookEventType = "participant_joined"
	WebhookParticipantLeft              WebhookEventType = "participant_left"
	WebhookParticipantConnectionAborted WebhookEventType = "participant_connection_aborted"
	WebhookTrackPublished               WebhookEventType = "track_published"
	WebhookTrackUnpublished             WebhookEventType = "track_unpublished"
	WebhookEgressStarted                WebhookEventType = "egress_started"
	WebhookEgressUpdated                WebhookEventType = "egress_updated"
	WebhookEgressEnded                  WebhookEventType = "egress_ended"
	WebhookIngressStarted               WebhookEventType = "ingress_started"
	WebhookIngressEnded                 WebhookEventType = "ingress_ended"
)

// WebhookEvent is one verified webhook. Which parts are set depends on
// Type: Room for room_*, participant_* and track_* events; Participant for
// participant_* and track_*; Track for track_*; Egress for egress_*;
// Ingress for ingress_*. An event type callstate does not know is
// delivered with the parts it carries.
type WebhookEvent struct {
	// ID is the event's unique id, the same in every delivery of it.
	ID string
	// Type is the event's type.
	Type WebhookEventType
	// CreatedAt is when the server created the event (whole seconds).
	CreatedAt time.Time
	// Room is the room the event is about.
	Room *RoomInfo
	// Participant is the participant the event is about.
	Participant *Participant
	// Track is the track the event is about.
	Track *TrackInfo
	// Egress is the egress (recording, stream) the event is about.
	Egress *EgressInfo
	// Ingress is the ingress the event is about.
	Ingress *IngressInfo
}

// EgressStatus is the state of an egress.
type EgressStatus int32

// Egress states.
const (
	EgressStarting     EgressStatus = EgressStatus(lkpb.EgressStatus_EGRESS_STARTING)
	EgressActive       EgressStatus = EgressStatus(lkpb.EgressStatus_EGRESS_ACTIVE)
	EgressEnding       EgressStatus = EgressStatus(lkpb.EgressStatus_EGRESS_ENDING)
	EgressComplete     EgressStatus = EgressStatus(lkpb.EgressStatus_EGRESS_COMPLETE)
	EgressFailed       EgressStatus = EgressStatus(lkpb.EgressStatus_EGRESS_FAILED)
	EgressAborted      EgressStatus = EgressStatus(lkpb.EgressStatus_EGRESS_ABORTED)
	EgressLimitReached EgressStatus = EgressStatus(lkpb.EgressStatus_EGRESS_LIMIT_REACHED)
)

// String returns the state in lower case without LiveKit's prefix, for
// example "active".
func (s EgressStatus) String() string {
	if name, ok := lkpb.EgressStatus_name[int32(s)]; ok {
		return strings.ToLower(strings.TrimPrefix(name, "EGRESS_"))
	}
	return fmt.Sprintf("egress_status(%d)", int32(s))
}

// EgressInfo describes an egress: a recording or a stream of a room.
type EgressInfo struct {
	// ID is the egress id.
	ID string
	// RoomSID and RoomName name the room recorded.
	RoomSID  string
	RoomName string
	// Status is the egress's state.
	Status EgressStatus
	// StartedAt, EndedAt and UpdatedAt are zero until they happened.
	StartedAt time.Time
	EndedAt   time.Time
	UpdatedAt time.Time
	// Error and ErrorCode describe a failure.
	Error     string
	ErrorCode int
	// Details is the egress's explanation of its state.
	Details string
}

// IngressStatus is the state of an ingress.
type IngressStatus int32

// Ingress states.
const (
	IngressInactive   IngressStatus = IngressStatus(lkpb.IngressState_ENDPOINT_INACTIVE)
	IngressBuffering  IngressStatus = IngressStatus(lkpb.IngressState_ENDPOINT_BUFFERING)
	IngressPublishing IngressStatus = IngressStatus(lkpb.IngressState_ENDPOINT_PUBLISHING)
	IngressError      IngressStatus = IngressStatus(lkpb.IngressState_ENDPOINT_ERROR)
	IngressComplete   IngressStatus = IngressStatus(lkpb.IngressState_ENDPOINT_COMPLETE)
)

// String returns the state in lower case without LiveKit's prefix, for
// example "publishing".
func (s IngressStatus) String() string {
	if name, ok := lkpb.IngressState_Status_name[int32(s)]; ok {
		return strings.ToLower(strings.TrimPrefix(name, "ENDPOINT_"))
	}
	return fmt.Sprintf("ingress_status(%d)", int32(s))
}

// IngressInput is the protocol an ingress receives media with.
type IngressInput int32

// Ingress inputs.
const (
	IngressRTMP IngressInput = IngressInput(lkpb.IngressInput_RTMP_INPUT)
	IngressWHIP IngressInput = IngressInput(lkpb.IngressInput_WHIP_INPUT)
	IngressURL  IngressInput = IngressInput(lkpb.IngressInput_URL_INPUT)
)

// String returns the input in lower case, for example "rtmp".
func (i IngressInput) String() string {
	if name, ok := lkpb.IngressInput_name[int32(i)]; ok {
		return strings.ToLower(strings.TrimSuffix(name, "_INPUT"))
	}
	return fmt.Sprintf("ingress_input(%d)", int32(i))
}

// IngressInfo describes an ingress: media pushed or pulled into a room. Its
// stream key, a credential, is not decoded.
type IngressInfo struct {
	// ID is the ingress id.
	ID string
	// Name is the ingress's name.
	Name string
	// URL is where the encoder pushes to, or where media is pulled from.
	URL string
	// Input is the ingress's protocol.
	Input IngressInput
	// RoomName and the Participant fields describe the participant the
	// ingress publishes as.
	RoomName            string
	ParticipantIdentity string
	ParticipantName     string
	ParticipantMetadata string
	// Reusable ingresses accept several sessions.
	Reusable bool
	// Status, Error, RoomSID and the times describe the current (or last)
	// session.
	Status    IngressStatus
	Error     string
	RoomSID   string
	StartedAt time.Time
	EndedAt   time.Time
	UpdatedAt time.Time
	// Tracks are the tracks the ingress publishes.
	Tracks []TrackInfo
}

// ErrBadWebhook is matched by every refusal of a webhook; the error is a
// *WebhookError.
var ErrBadWebhook = errors.New("callstate: webhook refused")

// WebhookErrorReason says why a webhook was refused.
type WebhookErrorReason string

// Reasons for refusing a webhook.
const (
	// WebhookNoAuthorization: the request has no Authorization header.
	WebhookNoAuthorization WebhookErrorReason = "no_authorization"
	// WebhookBadSignature: the header is not a JWT signed with the API
	// secret by the API key (wrong secret, other key, other algorithm,
	// malformed).
	WebhookBadSignature WebhookErrorReason = "bad_signature"
	// WebhookExpired: the JWT is expired or not yet valid.
	WebhookExpired WebhookErrorReason = "expired"
	// WebhookBadChecksum: the body is not the one the JWT signs.
	WebhookBadChecksum WebhookErrorReason = "bad_checksum"
	// WebhookReplay: the event was received before.
	WebhookReplay WebhookErrorReason = "replay"
	// WebhookMalformed: the body is not a webhook event.
	WebhookMalformed WebhookErrorReason = "malformed"
	// WebhookTooLarge: the body is over the receiver's limit.
	WebhookTooLarge WebhookErrorReason = "too_large"
)

// WebhookError is a refused webhook. It matches ErrBadWebhook. Its message
// never quotes the Authorization header.
type WebhookError struct {
	// Reason says why.
	Reason WebhookErrorReason
	// EventID is the id of a replayed event.
	EventID string
	// Message gives details.
	Message string
}

func (e *WebhookError) Error() string {
	s := "callstate: webhook refused: " + string(e.Reason)
	if e.EventID != "" {
		s += " of event " + e.EventID
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is reports whether target is ErrBadWebhook.
func (e *WebhookError) Is(target error) bool { return target == ErrBadWebhook }

// Limits of the webhook receiver.
const (
	// DefaultWebhookReplayWindow is how long a receiver remembers event
	// ids. LiveKit signs each delivery with a JWT valid for 5 minutes;
	// with the minute of clock skew tolerated on either side, a delivery
	// is never accepted after 7 minutes, so remembering ids longer than
	// that catches every replay: a replay within the window is refused by
	// its id, a later one by its expired JWT.
	DefaultWebhookReplayWindow = 10 * time.Minute
	// webhookLeeway is the clock skew tolerated on the JWT's times, as
	// LiveKit's own verifier does.
	webhookLeeway = time.Minute
	// maxWebhookBody bounds the body of a webhook.
	maxWebhookBody = 1 << 20
	// maxRememberedEvents bounds the replay memory; beyond it the oldest
	// ids are forgotten first (their JWTs expire soon after anyway).
	maxRememberedEvents = 100_000
)

// WebhookReceiver verifies LiveKit's webhooks and refuses replays. A
// webhook is a POST whose body is the event in protobuf JSON and whose
// Authorization header is a JWT issued by the API key, signed (HS256) with
// the API secret, whose "sha256" claim is the base64 SHA-256 of the body.
//
// A WebhookReceiver is safe for concurrent use; one receiver should serve
// all the deliveries of a key, so that it sees every event id.
type WebhookReceiver struct {
	key, secret string
	window      time.Duration
	now         func() time.Time

	mu    sync.Mutex
	seen  map[string]time.Time // event id -> when first accepted
	order []string             // ids in the order accepted, for eviction
}

// NewWebhookReceiver returns a receiver for the webhooks signed with the API
// key and secret. It returns an error wrapping ErrInvalidArgument for empty
// credentials.
func NewWebhookReceiver(apiKey, apiSecret string) (*WebhookReceiver, error) {
	if apiKey == "" || apiSecret == "" {
		return nil, fmt.Errorf("%w: NewWebhookReceiver: empty API key or secret", ErrInvalidArgument)
	}
	return &WebhookReceiver{key: apiKey, secret: apiSecret, window: DefaultWebhookReplayWindow, now: time.Now, seen: map[string]time.Time{}}, nil
}

// defaultReceivers back ReceiveWebhook, one per API key and secret.
var defaultReceivers struct {
	mu sync.Mutex
	m  map[[2]string]*WebhookReceiver
}

// ReceiveWebhook verifies and decodes the webhook of r with the API key and
// secret, as a WebhookReceiver for them does. The receivers are kept for
// the process's life, one per key, so that replays are refused across
// calls. Errors are *WebhookError.
func ReceiveWebhook(r *http.Request, apiKey, apiSecret string) (WebhookEvent, error) {
	if apiKey == "" || apiSecret == "" {
		return WebhookEvent{}, fmt.Errorf("%w: ReceiveWebhook: empty API key or secret", ErrInvalidArgument)
	}
	defaultReceivers.mu.Lock()
	if defaultReceivers.m == nil {
		defaultReceivers.m = map[[2]string]*WebhookReceiver{}
	}
	k := [2]string{apiKey, apiSecret}
	w := defaultReceivers.m[k]
	if w == nil {
		w, _ = NewWebhookReceiver(apiKey, apiSecret)
		defaultReceivers.m[k] = w
	}
	defaultReceivers.mu.Unlock()
	return w.Receive(r)
}

// Receive reads r's body and verifies it. It returns the event, or a
// *WebhookError: the signature, the JWT's validity period and the body's
// checksum are checked before the body is decoded, and an event id
// accepted before is refused with WebhookReplay.
func (w *WebhookReceiver) Receive(r *http.Request) (WebhookEvent, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil {
		return WebhookEvent{}, &WebhookError{Reason: WebhookMalformed, Message: "reading the body: " + redactTokens(err.Error())}
	}
	if len(body) > maxWebhookBody {
		return WebhookEvent{}, &WebhookError{Reason: WebhookTooLarge, Message: fmt.Sprintf("over %d bytes", maxWebhookBody)}
	}
	return w.verify(r.Header.Get("Authorization"), body)
}

// verify checks a webhook's authorization and body and decodes it.
func (w *WebhookReceiver) verify(auth string, body []byte) (WebhookEvent, error) {
	auth = strings.TrimSpace(auth)
	// LiveKit sends the bare JWT; a Bearer prefix is accepted too.
	if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		auth = strings.TrimSpace(auth[7:])
	}
	if auth == "" {
		return WebhookEvent{}, &WebhookError{Reason: WebhookNoAuthorization}
	}
	var tc tokenClaims
	_, err := jwt.ParseWithClaims(auth, &tc, func(*jwt.Token) (any, error) {
		return []byte(w.secret), nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithLeeway(webhookLeeway),
		jwt.WithTimeFunc(w.now), jwt.WithExpirationRequired(), jwt.WithIssuer(w.key))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return WebhookEvent{}, &WebhookError{Reason: WebhookExpired, Message: jwtReason(err)}
	case err != nil:
		return WebhookEvent{}, &WebhookError{Reason: WebhookBadSignature, Message: jwtReason(err)}
	}
	sum := sha256.Sum256(body)
	want := base64.StdEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(tc.Sha256), []byte(want)) != 1 {
		return WebhookEvent{}, &WebhookError{Reason: WebhookBadChecksum}
	}
	ev, err := decodeWebhook(body)
	if err != nil {
		return WebhookEvent{}, err
	}
	// The id is remembered only once everything else checked out: a
	// refused delivery must not keep a later, genuine one out.
	id := ev.ID
	if id == "" {
		id = "sha256:" + want
	}
	if !w.remember(id) {
		return WebhookEvent{}, &WebhookError{Reason: WebhookReplay, EventID: ev.ID}
	}
	return ev, nil
}

// jwtReason is the JWT library's explanation, without the token.
func jwtReason(err error) string { return redactTokens(err.Error()) }

// remember records id and reports whether it is new within the window.
func (w *WebhookReceiver) remember(id string) bool {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	// Forget the ids older than the window, oldest first.
	for len(w.order) > 0 {
		first := w.order[0]
		if t, ok := w.seen[first]; ok && now.Sub(t) < w.window && len(w.order) < maxRememberedEvents {
			break
		}
		delete(w.seen, first)
		w.order[0] = ""
		w.order = w.order[1:]
	}
	if _, ok := w.seen[id]; ok {
		return false
	}
	w.seen[id] = now
	w.order = append(w.order, id)
	return true
}

// decodeWebhook decodes a webhook body. Fields and enum values callstate
// does not know are ignored, so that newer servers' events still decode.
func decodeWebhook(body []byte) (WebhookEvent, error) {
	var pb lkpb.WebhookEvent
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &pb); err != nil {
		return WebhookEvent{}, &WebhookError{Reason: WebhookMalformed, Message: err.Error()}
	}
	if pb.GetEvent() == "" {
		return WebhookEvent{}, &WebhookError{Reason: WebhookMalformed, Message: "no event type"}
	}
	ev := WebhookEvent{ID: pb.GetId(), Type: WebhookEventType(pb.GetEvent()), Track: trackFromProto(pb.GetTrack())}
	if pb.GetCreatedAt() != 0 {
		ev.CreatedAt = time.Unix(pb.GetCreatedAt(), 0)
	}
	if r := pb.GetRoom(); r != nil {
		info := roomInfoFromProto(r)
		ev.Room = &info
	}
	if p := pb.GetParticipant(); p != nil {
		part := participantFromInfo(p)
		ev.Participant = &part
	}
	if e := pb.GetEgressInfo(); e != nil {
		ev.Egress = &EgressInfo{
			ID:        e.GetEgressId(),
			RoomSID:   e.GetRoomId(),
			RoomName:  e.GetRoomName(),
			Status:    EgressStatus(e.GetStatus()),
			StartedAt: unixNanos(e.GetStartedAt()),
			EndedAt:   unixNanos(e.GetEndedAt()),
			UpdatedAt: unixNanos(e.GetUpdatedAt()),
			Error:     e.GetError(),
			ErrorCode: int(e.GetErrorCode()),
			Details:   e.GetDetails(),
		}
	}
	if in := pb.GetIngressInfo(); in != nil {
		st := in.GetState()
		ev.Ingress = &IngressInfo{
			ID:                  in.GetIngressId(),
			Name:                in.GetName(),
			URL:                 in.GetUrl(),
			Input:               IngressInput(in.GetInputType()),
			RoomName:            in.GetRoomName(),
			ParticipantIdentity: in.GetParticipantIdentity(),
			ParticipantName:     in.GetParticipantName(),
			ParticipantMetadata: in.GetParticipantMetadata(),
			Reusable:            in.GetReusable(),
			Status:              IngressStatus(st.GetStatus()),
			Error:               st.GetError(),
			RoomSID:             st.GetRoomId(),
			StartedAt:           unixNanos(st.GetStartedAt()),
			EndedAt:             unixNanos(st.GetEndedAt()),
			UpdatedAt:           unixNanos(st.GetUpdatedAt()),
		}
		for _, t := range st.GetTracks() {
			ev.Ingress.Tracks = append(ev.Ingress.Tracks, *trackFromProto(t))
		}
	}
	return ev, nil
}

// unixNanos converts LiveKit's egress and ingress times (nanoseconds since
// the epoch); zero stays the zero time.
func unixNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Handler returns an http.Handler that receives webhooks and calls f with
// each verified event, one call at a time per request, before answering
// 200. It answers 405 to other methods than POST, 401 to a refused
// signature, checksum or validity period, 400 to a malformed body and 413
// to an oversized one, without calling f. A replayed event is answered 200
// without calling f: LiveKit delivers an event again when it did not see
// the first answer, and wants a success to stop.
func (w *WebhookReceiver) Handler(f func(WebhookEvent)) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", http.MethodPost)
			http.Error(rw, "POST only", http.StatusMethodNotAllowed)
			return
		}
		ev, err := w.Receive(r)
		var we *WebhookError
		switch {
		case err == nil:
			f(ev)
			rw.WriteHeader(http.StatusOK)
		case errors.As(err, &we) && we.Reason == WebhookReplay:
			rw.WriteHeader(http.StatusOK)
		case errors.As(err, &we) && we.Reason == WebhookMalformed:
			http.Error(rw, string(we.Reason), http.StatusBadRequest)
		case errors.As(err, &we) && we.Reason == WebhookTooLarge:
			http.Error(rw, string(we.Reason), http.StatusRequestEntityTooLarge)
		case errors.As(err, &we):
			http.Error(rw, string(we.Reason), http.StatusUnauthorized)
		default:
			http.Error(rw, "refused", http.StatusBadRequest)
		}
	})
}
