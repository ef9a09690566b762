package callstate

import (
	"time"

	"github.com/callstate/callstate/internal/lkpb"
)

// RoomInfo describes a room as the server reports it.
type RoomInfo struct {
	// SID is the server-assigned session id of the room.
	SID string
	// Name is the room's name.
	Name string
	// Metadata is the room's metadata (the raw form of the session data).
	Metadata string
	// NumParticipants is the number of participants, as last reported.
	// livekit-server reports counts in the room updates it sends (for a
	// metadata change, a recording starting or stopping), not in the join
	// response, where they are 0.
	NumParticipants int
	// NumPublishers is the number of participants that publish, as last
	// reported.
	NumPublishers int
	// Recording is true while the room is recorded (egress).
	Recording bool
	// MaxParticipants is the room's participant limit; 0 means no limit.
	MaxParticipants int
	// CreatedAt is when the room was created.
	CreatedAt time.Time
	// EmptyTimeout is how long the room lives without participants.
	EmptyTimeout time.Duration
	// DepartureTimeout is how long the room lives after the last
	// participant left.
	DepartureTimeout time.Duration
}

// roomInfoFromProto converts the wire form.
func roomInfoFromProto(r *lkpb.Room) RoomInfo {
	info := RoomInfo{
		SID:              r.GetSid(),
		Name:             r.GetName(),
		Metadata:         r.GetMetadata(),
		NumParticipants:  int(r.GetNumParticipants()),
		NumPublishers:    int(r.GetNumPublishers()),
		Recording:        r.GetActiveRecording(),
		MaxParticipants:  int(r.GetMaxParticipants()),
		EmptyTimeout:     time.Duration(r.GetEmptyTimeout()) * time.Second,
		DepartureTimeout: time.Duration(r.GetDepartureTimeout()) * time.Second,
	}
	switch {
	case r.GetCreationTimeMs() != 0:
		info.CreatedAt = time.UnixMilli(r.GetCreationTimeMs())
	case r.GetCreationTime() != 0:
		info.CreatedAt = time.Unix(r.GetCreationTime(), 0)
	}
	return info
}

func (r *Room) applyRoom(pr *lkpb.Room) {
	if pr == nil {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.unlock()
	prev := r.info
	r.info = roomInfoFromProto(pr)
	if prev.Recording != r.info.Recording {
		r.emitLocked(RecordingChanged{Time: now, Recording: r.info.Recording})
	}
	if prev.Metadata == r.info.Metadata {
		return
	}
	r.emitLocked(RoomMetadataChanged{Time: now, Metadata: r.info.Metadata, Previous: prev.Metadata})
	// A room with another sid is the room created anew (a restarted
	// server): its empty metadata is restored, not taken as a Replace.
	restore := prev.SID != "" && r.info.SID != "" && prev.SID != r.info.SID
	if ev, ok := r.session.observe(now, r.info.Metadata, restore); ok {
		r.emitLocked(ev)
	}
}
