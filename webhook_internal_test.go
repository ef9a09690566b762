package callstate

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// signWebhook returns the Authorization header LiveKit sends with body: a
// JWT issued by key, valid from nbf for validFor, whose sha256 claim is the
// base64 SHA-256 of body.
func signWebhook(t *testing.T, body, key, secret string, nbf time.Time, validFor time.Duration) string {
	t.Helper()
	sum := sha256.Sum256([]byte(body))
	claims := `{"iss":"` + key + `","iat":` + strconv.FormatInt(nbf.Unix(), 10) +
		`,"nbf":` + strconv.FormatInt(nbf.Unix(), 10) + `,"exp":` + strconv.FormatInt(nbf.Add(validFor).Unix(), 10) +
		`,"sha256":"` + base64.StdEncoding.EncodeToString(sum[:]) + `"}`
	return signRaw(t, claims, secret)
}

func webhookRequest(t *testing.T, body, auth string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/webhook+json")
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

// Bodies in the protobuf JSON LiveKit's server writes (int64 as strings,
// enums by name), one per event type.
var liveKitWebhooks = map[WebhookEventType]string{
	WebhookRoomStarted:  `{"event":"room_started","room":{"sid":"RM_1","name":"r","emptyTimeout":300,"departureTimeout":20,"creationTime":"1700000000","creationTimeMs":"1700000000123","turnPassword":"x","enabledCodecs":[{"mime":"audio/opus"}]},"id":"EV_1","createdAt":"1700000001"}`,
	WebhookRoomFinished: `{"event":"room_finished","room":{"sid":"RM_1","name":"r","numParticipants":0},"id":"EV_2","createdAt":"1700000002"}`,
	WebhookParticipantJoined: `{"event":"participant_joined","room":{"sid":"RM_1","name":"r"},"participant":{"sid":"PA_1","identity":"alice","state":"ACTIVE","joinedAt":"1700000000","joinedAtMs":"1700000000500",` +
		`"name":"Alice","version":3,"permission":{"canSubscribe":true,"canPublish":true,"canPublishData":true,"canPublishSources":["CAMERA"]},"kind":"AGENT","kindDetails":["FORWARDED"],"attributes":{"a":"b"},"isPublisher":true,"futureField":1},"id":"EV_3","createdAt":"1700000003"}`,
	WebhookParticipantLeft:              `{"event":"participant_left","room":{"sid":"RM_1","name":"r"},"participant":{"sid":"PA_1","identity":"alice","state":"DISCONNECTED","disconnectReason":"CLIENT_INITIATED"},"id":"EV_4","createdAt":"1700000004"}`,
	WebhookParticipantConnectionAborted: `{"event":"participant_connection_aborted","room":{"sid":"RM_1","name":"r"},"participant":{"sid":"PA_2","identity":"bob","state":"JOINING"},"id":"EV_5","createdAt":"1700000005"}`,
	WebhookTrackPublished: `{"event":"track_published","room":{"sid":"RM_1","name":"r"},"participant":{"sid":"PA_1","identity":"alice"},` +
		`"track":{"sid":"TR_1","type":"VIDEO","name":"cam","width":1280,"height":720,"source":"CAMERA","mimeType":"video/VP8","mid":"1","stream":"camera","codecs":[{"mimeType":"video/VP8"}],"audioFeatures":["TF_STEREO"]},"id":"EV_6","createdAt":"1700000006"}`,
	WebhookTrackUnpublished: `{"event":"track_unpublished","room":{"sid":"RM_1","name":"r"},"participant":{"sid":"PA_1","identity":"alice"},"track":{"sid":"TR_2","type":"AUDIO","source":"MICROPHONE","muted":true},"id":"EV_7","createdAt":"1700000007"}`,
	WebhookEgressStarted:    `{"event":"egress_started","egressInfo":{"egressId":"EG_1","roomId":"RM_1","roomName":"r","status":"EGRESS_STARTING","startedAt":"1700000000000000000","roomComposite":{"roomName":"r","layout":"grid"}},"id":"EV_8","createdAt":"1700000008"}`,
	WebhookEgressUpdated:    `{"event":"egress_updated","egressInfo":{"egressId":"EG_1","roomId":"RM_1","roomName":"r","status":"EGRESS_ACTIVE","updatedAt":"1700000001000000000"},"id":"EV_9","createdAt":"1700000009"}`,
	WebhookEgressEnded:      `{"event":"egress_ended","egressInfo":{"egressId":"EG_1","roomId":"RM_1","roomName":"r","status":"EGRESS_FAILED","endedAt":"1700000002000000000","error":"no space","errorCode":507,"details":"disk","fileResults":[{"filename":"a.mp4"}]},"id":"EV_10","createdAt":"1700000010"}`,
	WebhookIngressStarted: `{"event":"ingress_started","ingressInfo":{"ingressId":"IN_1","name":"obs","streamKey":"SECRET-KEY","url":"rtmp://host/x","inputType":"RTMP_INPUT","roomName":"r","participantIdentity":"obs","participantName":"OBS","reusable":true,` +
		`"state":{"status":"ENDPOINT_PUBLISHING","roomId":"RM_1","startedAt":"1700000000000000000","tracks":[{"sid":"TR_3","type":"AUDIO","source":"MICROPHONE"}],"video":{"mimeType":"video/h264"}}},"id":"EV_11","createdAt":"1700000011"}`,
	WebhookIngressEnded: `{"event":"ingress_ended","ingressInfo":{"ingressId":"IN_1","inputType":"WHIP_INPUT","state":{"status":"ENDPOINT_ERROR","error":"gone","endedAt":"1700000003000000000"}},"id":"EV_12","createdAt":"1700000012"}`,
}

func newTestReceiver(t *testing.T) *WebhookReceiver {
	w, err := NewWebhookReceiver(testKey, testSecret)
	require.NoError(t, err)
	return w
}

func TestWebhookDecodesEveryEvent(t *testing.T) {
	w := newTestReceiver(t)
	got := map[WebhookEventType]WebhookEvent{}
	for typ, body := range liveKitWebhooks {
		ev, err := w.Receive(webhookRequest(t, body, signWebhook(t, body, testKey, testSecret, time.Now(), 5*time.Minute)))
		require.NoError(t, err, typ)
		assert.Equal(t, typ, ev.Type)
		assert.NotEmpty(t, ev.ID)
		assert.False(t, ev.CreatedAt.IsZero())
		got[typ] = ev
	}

	rs := got[WebhookRoomStarted]
	require.NotNil(t, rs.Room)
	assert.Equal(t, "RM_1", rs.Room.SID)
	assert.Equal(t, 300*time.Second, rs.Room.EmptyTimeout)
	assert.Equal(t, time.UnixMilli(1700000000123), rs.Room.CreatedAt)
	assert.Equal(t, time.Unix(1700000001, 0), rs.CreatedAt)
	assert.Equal(t, "EV_1", rs.ID)

	pj := got[WebhookParticipantJoined]
	require.NotNil(t, pj.Participant)
	assert.Equal(t, "alice", pj.Participant.Identity)
	assert.Equal(t, KindAgent, pj.Participant.Kind)
	assert.Equal(t, map[string]string{"a": "b"}, pj.Participant.Attributes)
	assert.True(t, pj.Participant.Permissions.CanPublish)
	assert.Equal(t, uint32(3), pj.Participant.Version)
	assert.Equal(t, time.UnixMilli(1700000000500), pj.Participant.JoinedAt)
	assert.Equal(t, "alice", got[WebhookParticipantLeft].Participant.Identity)
	assert.Equal(t, "bob", got[WebhookParticipantConnectionAborted].Participant.Identity)

	tp := got[WebhookTrackPublished]
	assert.Equal(t, &TrackInfo{SID: "TR_1", Type: TrackVideo, Source: SourceCamera, Name: "cam", Width: 1280, Height: 720, MimeType: "video/VP8", Stream: "camera"}, tp.Track)
	assert.Equal(t, "alice", tp.Participant.Identity)
	tu := got[WebhookTrackUnpublished]
	assert.Equal(t, &TrackInfo{SID: "TR_2", Type: TrackAudio, Source: SourceMicrophone, Muted: true}, tu.Track)

	assert.Equal(t, &EgressInfo{ID: "EG_1", RoomSID: "RM_1", RoomName: "r", Status: EgressStarting, StartedAt: time.Unix(1700000000, 0)}, got[WebhookEgressStarted].Egress)
	assert.Equal(t, EgressActive, got[WebhookEgressUpdated].Egress.Status)
	assert.Equal(t, time.Unix(1700000001, 0), got[WebhookEgressUpdated].Egress.UpdatedAt)
	assert.Equal(t, &EgressInfo{ID: "EG_1", RoomSID: "RM_1", RoomName: "r", Status: EgressFailed, EndedAt: time.Unix(1700000002, 0), Error: "no space", ErrorCode: 507, Details: "disk"}, got[WebhookEgressEnded].Egress)

	assert.Equal(t, &IngressInfo{ID: "IN_1", Name: "obs", URL: "rtmp://host/x", Input: IngressRTMP, RoomName: "r", ParticipantIdentity: "obs", ParticipantName: "OBS", Reusable: true,
		Status: IngressPublishing, RoomSID: "RM_1", StartedAt: time.Unix(1700000000, 0), Tracks: []TrackInfo{{SID: "TR_3", Type: TrackAudio, Source: SourceMicrophone}}}, got[WebhookIngressStarted].Ingress)
	assert.NotContains(t, strings.Join([]string{got[WebhookIngressStarted].Ingress.URL, got[WebhookIngressStarted].Ingress.Name}, " "), "SECRET-KEY")
	assert.Equal(t, &IngressInfo{ID: "IN_1", Input: IngressWHIP, Status: IngressError, Error: "gone", EndedAt: time.Unix(1700000003, 0)}, got[WebhookIngressEnded].Ingress)

	// A newer server's enum values and fields are ignored, not refused.
	ev, err := decodeWebhook([]byte(`{"event":"participant_joined","participant":{"identity":"a","kind":"NEW_KIND","state":"NEW_STATE","newField":{}}}`))
	require.NoError(t, err)
	assert.Equal(t, "a", ev.Participant.Identity)
	assert.Equal(t, KindStandard, ev.Participant.Kind)

	assert.Equal(t, "failed", EgressFailed.String())
	assert.Equal(t, "publishing", IngressPublishing.String())
	assert.Equal(t, "whip", IngressWHIP.String())
}

func TestWebhookRefusals(t *testing.T) {
	body := liveKitWebhooks[WebhookRoomStarted]
	now := time.Now()
	good := signWebhook(t, body, testKey, testSecret, now, 5*time.Minute)
	cases := []struct {
		name, body, auth string
		reason           WebhookErrorReason
	}{
		{"no header", body, "", WebhookNoAuthorization},
		{"wrong secret", body, signWebhook(t, body, testKey, testSecret+"x", now, 5*time.Minute), WebhookBadSignature},
		{"other key", body, signWebhook(t, body, "APIother", testSecret, now, 5*time.Minute), WebhookBadSignature},
		{"not a JWT", body, "garbage", WebhookBadSignature},
		{"expired", body, signWebhook(t, body, testKey, testSecret, now.Add(-10*time.Minute), 5*time.Minute), WebhookExpired},
		{"not yet valid", body, signWebhook(t, body, testKey, testSecret, now.Add(5*time.Minute), 5*time.Minute), WebhookExpired},
		{"body changed", strings.Replace(body, `"r"`, `"s"`, 1), good, WebhookBadChecksum},
		{"not an event", `{"foo":1}`, signWebhook(t, `{"foo":1}`, testKey, testSecret, now, time.Minute), WebhookMalformed},
		{"not JSON", `<xml/>`, signWebhook(t, `<xml/>`, testKey, testSecret, now, time.Minute), WebhookMalformed},
		{"too large", strings.Repeat(" ", maxWebhookBody+1), "x", WebhookTooLarge},
	}
	w := newTestReceiver(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.Receive(webhookRequest(t, tc.body, tc.auth))
			var we *WebhookError
			require.ErrorAs(t, err, &we)
			assert.Equal(t, tc.reason, we.Reason, err.Error())
			require.ErrorIs(t, err, ErrBadWebhook)
			assert.NotContains(t, err.Error(), "eyJ", "the error must not quote the token")
			assert.NotContains(t, err.Error(), testSecret)
		})
	}
	// None of the refusals used up the event id.
	_, err := w.Receive(webhookRequest(t, body, good))
	require.NoError(t, err)
	// Bearer prefix accepted; same id refused as a replay.
	_, err = w.Receive(webhookRequest(t, body, "Bearer "+good))
	var we *WebhookError
	require.ErrorAs(t, err, &we)
	assert.Equal(t, WebhookReplay, we.Reason)
	assert.Equal(t, "EV_1", we.EventID)
}

func TestWebhookReplayWindow(t *testing.T) {
	w := newTestReceiver(t)
	clock := time.Now()
	w.now = func() time.Time { return clock }
	body := liveKitWebhooks[WebhookRoomFinished]
	// Another delivery of the same event, re-signed (as LiveKit signs each
	// attempt anew), is refused while remembered.
	_, err := w.Receive(webhookRequest(t, body, signWebhook(t, body, testKey, testSecret, clock, 5*time.Minute)))
	require.NoError(t, err)
	clock = clock.Add(DefaultWebhookReplayWindow - time.Second)
	_, err = w.Receive(webhookRequest(t, body, signWebhook(t, body, testKey, testSecret, clock, 5*time.Minute)))
	require.ErrorIs(t, err, ErrBadWebhook)
	// After the window the id is forgotten; by then the first delivery's
	// JWT has long expired.
	clock = clock.Add(DefaultWebhookReplayWindow + time.Second)
	_, err = w.Receive(webhookRequest(t, body, signWebhook(t, body, testKey, testSecret, clock, 5*time.Minute)))
	require.NoError(t, err)
	w.mu.Lock()
	assert.Len(t, w.seen, 1)
	w.mu.Unlock()
}

func TestWebhookHandler(t *testing.T) {
	w := newTestReceiver(t)
	var got []WebhookEvent
	h := w.Handler(func(ev WebhookEvent) { got = append(got, ev) })
	body := liveKitWebhooks[WebhookParticipantJoined]
	auth := signWebhook(t, body, testKey, testSecret, time.Now(), 5*time.Minute)
	status := func(r *http.Request) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	assert.Equal(t, http.StatusOK, status(webhookRequest(t, body, auth)))
	assert.Equal(t, http.StatusOK, status(webhookRequest(t, body, auth)), "a replay is acknowledged")
	require.Len(t, got, 1, "a replay is not delivered")
	assert.Equal(t, http.StatusUnauthorized, status(webhookRequest(t, body, "")))
	bad := `{"event":`
	assert.Equal(t, http.StatusBadRequest, status(webhookRequest(t, bad, signWebhook(t, bad, testKey, testSecret, time.Now(), time.Minute))))
	assert.Equal(t, http.StatusMethodNotAllowed, status(httptest.NewRequest(http.MethodGet, "/", nil)))
	assert.Equal(t, http.StatusRequestEntityTooLarge, status(webhookRequest(t, strings.Repeat("x", maxWebhookBody+1), auth)))
	require.Len(t, got, 1)
}

func TestReceiveWebhookRemembersAcrossCalls(t *testing.T) {
	body := `{"event":"room_started","id":"EV_plain_` + strconv.FormatInt(time.Now().UnixNano(), 10) + `"}`
	auth := signWebhook(t, body, testKey, testSecret, time.Now(), time.Minute)
	ev, err := ReceiveWebhook(webhookRequest(t, body, auth), testKey, testSecret)
	require.NoError(t, err)
	assert.Equal(t, WebhookRoomStarted, ev.Type)
	_, err = ReceiveWebhook(webhookRequest(t, body, auth), testKey, testSecret)
	require.ErrorIs(t, err, ErrBadWebhook)
	_, err = ReceiveWebhook(webhookRequest(t, body, auth), testKey, "")
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = NewWebhookReceiver("", testSecret)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

func FuzzDecodeWebhook(f *testing.F) {
	for _, b := range liveKitWebhooks {
		f.Add([]byte(b))
	}
	f.Add([]byte(`{"event":"x","participant":{"kind":"NEW_KIND"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeWebhook(b)
		var we *WebhookError
		if err != nil && (!errors.As(err, &we) || we.Reason != WebhookMalformed) {
			t.Fatalf("decodeWebhook: %v", err)
		}
		if err == nil && ev.Type == "" {
			t.Fatal("an event without a type was accepted")
		}
	})
}
