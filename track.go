package callstate

import (
	"fmt"
	"strings"

	"github.com/callstate/callstate/internal/lkpb"
)

// TrackSource is where a published track comes from, as LiveKit classifies
// it. Tokens name sources by the lower-case form of String (the
// canPublishSources grant).
type TrackSource int32

// Track sources.
const (
	SourceUnknown          TrackSource = TrackSource(lkpb.TrackSource_UNKNOWN)
	SourceCamera           TrackSource = TrackSource(lkpb.TrackSource_CAMERA)
	SourceMicrophone       TrackSource = TrackSource(lkpb.TrackSource_MICROPHONE)
	SourceScreenShare      TrackSource = TrackSource(lkpb.TrackSource_SCREEN_SHARE)
	SourceScreenShareAudio TrackSource = TrackSource(lkpb.TrackSource_SCREEN_SHARE_AUDIO)
)

// String returns the source's name in lower case, as tokens spell it, for
// example "screen_share".
func (s TrackSource) String() string {
	if name, ok := lkpb.TrackSource_name[int32(s)]; ok {
		return strings.ToLower(name)
	}
	return fmt.Sprintf("source(%d)", int32(s))
}

// MarshalText returns the source's name in lower case, as tokens spell it
// ("camera"); a source this version does not know is an error.
func (s TrackSource) MarshalText() ([]byte, error) {
	if _, ok := lkpb.TrackSource_name[int32(s)]; !ok {
		return nil, fmt.Errorf("%w: unknown track source %d", ErrInvalidArgument, int32(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a source's name in any case. A name this version does
// not know reads as SourceUnknown rather than failing, as LiveKit's server
// ignores sources it does not know in a token.
func (s *TrackSource) UnmarshalText(b []byte) error {
	*s, _ = parseTrackSource(string(b))
	return nil
}

// parseTrackSource is the inverse of String; ok is false for a name LiveKit
// does not know.
func parseTrackSource(s string) (TrackSource, bool) {
	v, ok := lkpb.TrackSource_value[strings.ToUpper(s)]
	return TrackSource(v), ok
}

// TrackType is the media type of a track.
type TrackType int32

// Track types.
const (
	TrackAudio TrackType = TrackType(lkpb.TrackType_AUDIO)
	TrackVideo TrackType = TrackType(lkpb.TrackType_VIDEO)
	TrackData  TrackType = TrackType(lkpb.TrackType_DATA)
)

// String returns the type's name in lower case, for example "audio".
func (t TrackType) String() string {
	if name, ok := lkpb.TrackType_name[int32(t)]; ok {
		return strings.ToLower(name)
	}
	return fmt.Sprintf("type(%d)", int32(t))
}

// TrackInfo describes a published track as the server reports it (in
// webhooks and in the answer to RoomService.MutePublishedTrack).
type TrackInfo struct {
	// SID is the server-assigned id of the track.
	SID string
	// Type is audio, video or data.
	Type TrackType
	// Source is where the track comes from (camera, microphone, ...).
	Source TrackSource
	// Name is the name its publisher gave the track.
	Name string
	// Muted reports whether the track is muted.
	Muted bool
	// Width and Height are a video track's dimensions, in pixels.
	Width, Height int
	// MimeType is the track's codec, for example "audio/opus".
	MimeType string
	// Stream is the name of the stream the track belongs to, if any.
	Stream string
}

// trackFromProto converts the wire form; nil gives nil.
func trackFromProto(t *lkpb.TrackInfo) *TrackInfo {
	if t == nil {
		return nil
	}
	return &TrackInfo{
		SID:      t.GetSid(),
		Type:     TrackType(t.GetType()),
		Source:   TrackSource(t.GetSource()),
		Name:     t.GetName(),
		Muted:    t.GetMuted(),
		Width:    int(t.GetWidth()),
		Height:   int(t.GetHeight()),
		MimeType: t.GetMimeType(),
		Stream:   t.GetStream(),
	}
}
