package callstate

import (
	"fmt"
	"slices"
	"time"

	"github.com/callstate/callstate/internal/lkpb"
)

// Room signals: what the server already tells every participant about the
// room besides its state — who is speaking, how good each participant's
// connection is, whether the room is recorded, how many participants and
// publishers it has. They are kept as state (ActiveSpeakers,
// ConnectionQuality, Info) and reported as events.

// Speaker is a participant the server counts among the active speakers.
type Speaker struct {
	// Identity is the speaker's identity; empty for a participant the Room
	// does not know (a hidden one).
	Identity string
	// SID is the speaker's participant sid.
	SID string
	// Level is the audio level, from 0 to 1 (the loudest).
	Level float32
	// Active is true while the participant speaks.
	Active bool
}

// ConnectionQuality is the server's rating of a participant's connection.
type ConnectionQuality int32

// Connection qualities, as LiveKit rates them.
const (
	QualityPoor      = ConnectionQuality(lkpb.ConnectionQuality_POOR)
	QualityGood      = ConnectionQuality(lkpb.ConnectionQuality_GOOD)
	QualityExcellent = ConnectionQuality(lkpb.ConnectionQuality_EXCELLENT)
	QualityLost      = ConnectionQuality(lkpb.ConnectionQuality_LOST)
)

// String returns the quality's name in lower case, for example "good".
func (q ConnectionQuality) String() string {
	switch q {
	case QualityPoor:
		return "poor"
	case QualityGood:
		return "good"
	case QualityExcellent:
		return "excellent"
	case QualityLost:
		return "lost"
	}
	return fmt.Sprintf("quality(%d)", int32(q))
}

// ActiveSpeakersChanged reports the server's new list of active speakers,
// loudest first (empty when nobody speaks).
type ActiveSpeakersChanged struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Speakers are the active speakers.
	Speakers []Speaker
}

// ConnectionQualityChanged reports the server's new rating of a
// participant's connection, the local participant's included.
type ConnectionQualityChanged struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Identity and SID name the participant (Identity is empty for one the
	// Room does not know).
	Identity, SID string
	// Quality is the new rating, Score its numeric form (LiveKit's MOS
	// estimate, 1 to 5).
	Quality ConnectionQuality
	Score   float32
	// Local is true for the local participant.
	Local bool
}

// RecordingChanged reports that the room's recording started or stopped.
type RecordingChanged struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Recording is true while the room is recorded.
	Recording bool
}

// When returns the time the Room observed the change.
func (e ActiveSpeakersChanged) When() time.Time { return e.Time }
func (ActiveSpeakersChanged) isEvent()          {}

// When returns the time the Room observed the change.
func (e ConnectionQualityChanged) When() time.Time { return e.Time }
func (ConnectionQualityChanged) isEvent()          {}

// When returns the time the Room observed the change.
func (e RecordingChanged) When() time.Time { return e.Time }
func (RecordingChanged) isEvent()          {}

// maxSpeakers bounds the active speakers the Room keeps from one update:
// LiveKit sends a handful; a hostile server could send millions.
const maxSpeakers = 256

// quality is a participant's last connection rating.
type quality struct {
	q     ConnectionQuality
	score float32
}

// ActiveSpeakers returns the server's last list of active speakers,
// loudest first.
func (r *Room) ActiveSpeakers() []Speaker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.speakers)
}

// ConnectionQuality returns the server's last rating of the connection of
// the participant with the given identity (the local one included), and
// false when the server has rated none yet.
func (r *Room) ConnectionQuality(identity string) (ConnectionQuality, float32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sid := r.local.SID
	if identity != r.local.Identity {
		p, ok := r.remotes[identity]
		if !ok {
			return 0, 0, false
		}
		sid = p.SID
	}
	q, ok := r.qualities[sid]
	return q.q, q.score, ok
}

// identityOfLocked returns the identity of the participant with the given
// sid, local or remote, or "" when the Room does not know it; r.mu held.
func (r *Room) identityOfLocked(sid string) string {
	if sid == r.local.SID {
		return r.local.Identity
	}
	return r.identityOfSIDLocked(sid)
}

// applySpeakers takes the server's active speakers; it runs on the read
// loop.
func (r *Room) applySpeakers(in []*lkpb.SpeakerInfo) {
	now := time.Now()
	r.mu.Lock()
	defer r.unlock()
	speakers := make([]Speaker, 0, min(len(in), maxSpeakers))
	for _, s := range in[:min(len(in), maxSpeakers)] {
		speakers = append(speakers, Speaker{Identity: r.identityOfLocked(s.GetSid()), SID: s.GetSid(), Level: s.GetLevel(), Active: s.GetActive()})
	}
	if slices.Equal(speakers, r.speakers) {
		return
	}
	r.speakers = speakers
	r.emitLocked(ActiveSpeakersChanged{Time: now, Speakers: slices.Clone(speakers)})
}

// applyQuality takes the server's connection ratings; it runs on the read
// loop. Ratings of participants the Room does not keep are ignored, so the
// map stays bounded by the participants.
func (r *Room) applyQuality(in []*lkpb.ConnectionQualityInfo) {
	now := time.Now()
	r.mu.Lock()
	defer r.unlock()
	for _, u := range in {
		sid := u.GetParticipantSid()
		id := r.identityOfLocked(sid)
		if id == "" {
			continue
		}
		q := quality{q: ConnectionQuality(u.GetQuality()), score: u.GetScore()}
		if old, ok := r.qualities[sid]; ok && old.q == q.q {
			r.qualities[sid] = q // the score alone changed: no event
			continue
		}
		r.qualities[sid] = q
		r.emitLocked(ConnectionQualityChanged{Time: now, Identity: id, SID: sid, Quality: q.q, Score: q.score, Local: sid == r.local.SID})
	}
}
