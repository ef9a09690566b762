package callstate_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// A real server posts its webhooks to a loopback receiver, which verifies
// and decodes them.
func TestWebhooksFromServer(t *testing.T) {
	events := make(chan callstate.WebhookEvent, 64)
	// The receiver needs the credentials before the server exists: they
	// are fixed here and given to the server.
	key, secret := "APIwebhooktest", "webhook-test-secret-0123456789abcdef"
	recv, err := callstate.NewWebhookReceiver(key, secret)
	require.NoError(t, err)
	hs := httptest.NewServer(recv.Handler(func(ev callstate.WebhookEvent) { events <- ev }))
	t.Cleanup(hs.Close)

	srv := calltest.NewServer(t, &calltest.Options{IgnoreEnv: true, APIKey: key, APISecret: secret, WebhookURLs: []string{hs.URL + "/livekit"}})
	rs := service(t, srv)
	ctx := ctxT(t)
	room := srv.RoomName(t)

	// await returns the next event of type typ for the room, skipping
	// others (the server posts them in order per room, but other rooms'
	// events may interleave).
	await := func(typ callstate.WebhookEventType) callstate.WebhookEvent {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Type == typ && ev.Room != nil && ev.Room.Name == room {
					return ev
				}
			case <-deadline:
				t.Fatalf("no %s webhook for room %s", typ, room)
			}
		}
	}

	_, err = rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: room, Metadata: "m"})
	require.NoError(t, err)
	started := await(callstate.WebhookRoomStarted)
	assert.NotEmpty(t, started.ID)
	assert.Equal(t, "m", started.Room.Metadata)
	assert.WithinDuration(t, time.Now(), started.CreatedAt, time.Minute)

	alice := srv.Join(t, room, "alice", nil)
	joined := await(callstate.WebhookParticipantJoined)
	require.NotNil(t, joined.Participant)
	assert.Equal(t, "alice", joined.Participant.Identity)
	assert.Equal(t, alice.LocalParticipant().SID, joined.Participant.SID)

	require.NoError(t, alice.Close())
	left := await(callstate.WebhookParticipantLeft)
	assert.Equal(t, "alice", left.Participant.Identity)

	require.NoError(t, rs.DeleteRoom(ctx, room))
	finished := await(callstate.WebhookRoomFinished)
	assert.Equal(t, started.Room.SID, finished.Room.SID)

	ids := map[string]bool{}
	for _, ev := range []callstate.WebhookEvent{started, joined, left, finished} {
		assert.False(t, ids[ev.ID], "event ids are unique")
		ids[ev.ID] = true
	}
}
