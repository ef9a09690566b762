package callstate

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate/internal/lkpb"
)

func signalUpdate(r *Room, pis ...*lkpb.ParticipantInfo) {
	r.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: pis}}})
}

func TestRoomSignals(t *testing.T) {
	r := newOfflineRoom(t)
	sub := r.Subscribe(nil)
	signalUpdate(r, &lkpb.ParticipantInfo{Identity: "a", Sid: "PA_a", Version: 1, IsPublisher: true,
		Kind: lkpb.ParticipantInfo_AGENT, KindDetails: []lkpb.ParticipantInfo_KindDetail{lkpb.ParticipantInfo_FORWARDED}})
	j := (<-sub.Events()).(ParticipantJoined)
	assert.True(t, j.Participant.IsPublisher)
	assert.Equal(t, KindAgent, j.Participant.Kind)
	assert.Equal(t, []ParticipantKindDetail{KindDetailForwarded}, j.Participant.KindDetails)

	// Active speakers: sids are named; the same list again is no event.
	speakers := &lkpb.SignalResponse{Message: &lkpb.SignalResponse_SpeakersChanged{SpeakersChanged: &lkpb.SpeakersChanged{Speakers: []*lkpb.SpeakerInfo{
		{Sid: "PA_a", Level: 0.8, Active: true}, {Sid: "PA_me", Level: 0.1, Active: true}, {Sid: "PA_hidden", Level: 0.5, Active: true}}}}}
	r.handleSignal(speakers)
	r.handleSignal(speakers)
	sc := (<-sub.Events()).(ActiveSpeakersChanged)
	require.Len(t, sc.Speakers, 3)
	assert.Equal(t, Speaker{Identity: "a", SID: "PA_a", Level: 0.8, Active: true}, sc.Speakers[0])
	assert.Equal(t, "me", sc.Speakers[1].Identity)
	assert.Equal(t, "", sc.Speakers[2].Identity)
	assert.Equal(t, sc.Speakers, r.ActiveSpeakers())

	// Connection quality, the local participant's too; unknown sids are
	// ignored.
	r.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_ConnectionQuality{ConnectionQuality: &lkpb.ConnectionQualityUpdate{Updates: []*lkpb.ConnectionQualityInfo{
		{ParticipantSid: "PA_a", Quality: lkpb.ConnectionQuality_POOR, Score: 2.1},
		{ParticipantSid: "PA_me", Quality: lkpb.ConnectionQuality_EXCELLENT, Score: 4.5},
		{ParticipantSid: "PA_nobody", Quality: lkpb.ConnectionQuality_LOST}}}}})
	qa := (<-sub.Events()).(ConnectionQualityChanged)
	assert.Equal(t, ConnectionQualityChanged{Time: qa.Time, Identity: "a", SID: "PA_a", Quality: QualityPoor, Score: 2.1}, qa)
	qme := (<-sub.Events()).(ConnectionQualityChanged)
	assert.True(t, qme.Local)
	assert.Equal(t, "excellent", qme.Quality.String())
	q, score, ok := r.ConnectionQuality("a")
	assert.True(t, ok)
	assert.Equal(t, QualityPoor, q)
	assert.InDelta(t, 2.1, score, 0.001)
	_, _, ok = r.ConnectionQuality("nobody")
	assert.False(t, ok)

	// Recording and counts, from room updates.
	r.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_RoomUpdate{RoomUpdate: &lkpb.RoomUpdate{Room: &lkpb.Room{
		Name: "room", ActiveRecording: true, NumParticipants: 7, NumPublishers: 2}}}})
	rc := (<-sub.Events()).(RecordingChanged)
	assert.True(t, rc.Recording)
	info := r.Info()
	assert.Equal(t, 7, info.NumParticipants)
	assert.Equal(t, 2, info.NumPublishers)
	assert.True(t, info.Recording)

	// Leaving forgets the participant's rating.
	signalUpdate(r, &lkpb.ParticipantInfo{Identity: "a", Sid: "PA_a", State: lkpb.ParticipantInfo_DISCONNECTED})
	assert.NotContains(t, r.qualities, "PA_a")
}

func TestSpeakersAreBounded(t *testing.T) {
	r := newOfflineRoom(t)
	var in []*lkpb.SpeakerInfo
	for i := range 10 * maxSpeakers {
		in = append(in, &lkpb.SpeakerInfo{Sid: fmt.Sprint("PA_", i), Active: true})
	}
	r.applySpeakers(in)
	assert.Len(t, r.ActiveSpeakers(), maxSpeakers)
}
