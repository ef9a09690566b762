package callstate

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/callstate/callstate/internal/lkpb"
)

// Participant is a snapshot of one participant's state: its identity, its
// metadata, name and attributes (LiveKit's vocabulary) and its user data
// (Daily's vocabulary, the JSON view of the metadata).
//
// A Participant is a value: the Room never changes it after handing it out,
// so it may be kept, compared and read from any goroutine. Attributes is a
// private copy.
type Participant struct {
	// SID is the server-assigned session id of the participant.
	SID string
	// Identity is the participant's identity from its token; unique in a room.
	Identity string
	// Name is the participant's display name.
	Name string
	// Metadata is the participant's metadata string. Its JSON view is the
	// participant's user data (see UserData).
	Metadata string
	// Attributes are the participant's key/value attributes.
	Attributes map[string]string
	// JoinedAt is when the participant joined the room.
	JoinedAt time.Time
	// Kind tells standard participants from agents, egress, SIP and others.
	Kind ParticipantKind
	// Permissions are the participant's effective grants.
	Permissions Permissions
	// KindDetails refine Kind (a cloud agent, a forwarded participant...).
	KindDetails []ParticipantKindDetail
	// IsPublisher is true when the server counts the participant as a
	// publisher (it publishes media or a data track); LiveKit announces
	// publishers' joins and leaves at once, others' on a ticker.
	IsPublisher bool
	// Version is the server's version counter of this participant's state;
	// it grows with every change.
	Version uint32
	// DataTracks are the data tracks the participant publishes (see
	// SubscribeDataTrack), in the server's order. callstate's own presence
	// track is not listed.
	DataTracks []DataTrackInfo
	// DeflateStreams is true when the participant's client advertised, as
	// it joined, that it inflates data streams compressed with raw deflate
	// (LiveKit's ClientInfo capability CAP_COMPRESSION_DEFLATE_RAW, which
	// the server copies to the participant's info): livekit-client 2.23 and
	// later where the browser can inflate deflate-raw, and callstate.
	// SendText, SendBytes and SendFile compress a stream only when every
	// recipient has it (see StreamOptions.NoCompression).
	DeflateStreams bool

	// clientProtocol is the participant's ClientInfo.client_protocol: which
	// RPC and data stream formats it understands.
	clientProtocol int32
}

// Permissions are the grants a participant holds in the room.
type Permissions struct {
	// CanSubscribe allows receiving others' tracks.
	CanSubscribe bool
	// CanPublish allows publishing tracks.
	CanPublish bool
	// CanPublishData allows sending data packets and app messages.
	CanPublishData bool
	// CanUpdateMetadata allows changing one's own metadata, name, attributes
	// and user data.
	CanUpdateMetadata bool
	// Hidden participants are not seen by others.
	Hidden bool
}

// ParticipantKind is the kind of a participant, as LiveKit classifies it.
type ParticipantKind int32

// Participant kinds.
const (
	KindStandard  ParticipantKind = ParticipantKind(lkpb.ParticipantInfo_STANDARD)
	KindIngress   ParticipantKind = ParticipantKind(lkpb.ParticipantInfo_INGRESS)
	KindEgress    ParticipantKind = ParticipantKind(lkpb.ParticipantInfo_EGRESS)
	KindSIP       ParticipantKind = ParticipantKind(lkpb.ParticipantInfo_SIP)
	KindAgent     ParticipantKind = ParticipantKind(lkpb.ParticipantInfo_AGENT)
	KindConnector ParticipantKind = ParticipantKind(lkpb.ParticipantInfo_CONNECTOR)
	KindBridge    ParticipantKind = ParticipantKind(lkpb.ParticipantInfo_BRIDGE)
)

// String returns the kind's name in lower case, for example "standard".
func (k ParticipantKind) String() string {
	switch k {
	case KindStandard:
		return "standard"
	case KindIngress:
		return "ingress"
	case KindEgress:
		return "egress"
	case KindSIP:
		return "sip"
	case KindAgent:
		return "agent"
	case KindConnector:
		return "connector"
	case KindBridge:
		return "bridge"
	}
	return fmt.Sprintf("kind(%d)", int32(k))
}

// UserData returns the participant's user data: its metadata when that is
// valid JSON, and false otherwise (no metadata, or metadata that is not
// JSON). The returned bytes are a copy.
func (p Participant) UserData() (json.RawMessage, bool) {
	if p.Metadata == "" || !json.Valid([]byte(p.Metadata)) {
		return nil, false
	}
	if p.Metadata == "null" {
		return nil, false
	}
	return json.RawMessage(p.Metadata), true
}

// DecodeUserData unmarshals the participant's user data into v. It returns
// an error matching ErrInvalidJSON when the participant's metadata is not
// JSON, and leaves v untouched when the participant has no metadata.
func (p Participant) DecodeUserData(v any) error {
	if p.Metadata == "" || p.Metadata == "null" {
		return nil
	}
	if !json.Valid([]byte(p.Metadata)) {
		return fmt.Errorf("%w: the metadata of participant %q is not JSON", ErrInvalidJSON, p.Identity)
	}
	if err := json.Unmarshal([]byte(p.Metadata), v); err != nil {
		return fmt.Errorf("%w: user data of participant %q: %v", ErrInvalidJSON, p.Identity, err)
	}
	return nil
}

// participantFromInfo converts the wire form into a snapshot.
func participantFromInfo(pi *lkpb.ParticipantInfo) Participant {
	p := Participant{
		SID:         pi.GetSid(),
		Identity:    pi.GetIdentity(),
		Name:        pi.GetName(),
		Metadata:    pi.GetMetadata(),
		Attributes:  maps.Clone(pi.GetAttributes()),
		Kind:        ParticipantKind(pi.GetKind()),
		IsPublisher: pi.GetIsPublisher(),
		Version:     pi.GetVersion(),
		DataTracks:  dataTracksFromInfo(pi.GetDataTracks()),

		DeflateStreams: slices.Contains(pi.GetCapabilities(), lkpb.ClientInfo_CAP_COMPRESSION_DEFLATE_RAW),

		clientProtocol: pi.GetClientProtocol(),
	}
	for _, d := range pi.GetKindDetails() {
		p.KindDetails = append(p.KindDetails, ParticipantKindDetail(d))
	}
	if p.Attributes == nil {
		p.Attributes = map[string]string{}
	}
	switch {
	case pi.GetJoinedAtMs() != 0:
		p.JoinedAt = time.UnixMilli(pi.GetJoinedAtMs())
	case pi.GetJoinedAt() != 0:
		p.JoinedAt = time.Unix(pi.GetJoinedAt(), 0)
	}
	if perm := pi.GetPermission(); perm != nil {
		p.Permissions = Permissions{
			CanSubscribe:      perm.GetCanSubscribe(),
			CanPublish:        perm.GetCanPublish(),
			CanPublishData:    perm.GetCanPublishData(),
			CanUpdateMetadata: perm.GetCanUpdateMetadata(),
			Hidden:            perm.GetHidden(),
		}
	}
	return p
}

// Limits on participant state, as LiveKit enforces them by default. Updates
// over a limit are refused before anything is sent.
const (
	// MaxMetadataSize is the largest metadata (and user data) in bytes.
	MaxMetadataSize = 512 << 10
	// MaxAttributesSize is the largest total size of attribute keys and
	// values in bytes.
	MaxAttributesSize = 64 << 10
	// MaxNameSize is the longest name in bytes.
	MaxNameSize = 256
)

func checkMetadata(s string) error {
	if len(s) > MaxMetadataSize {
		return &SizeError{What: "metadata", Size: len(s), Limit: MaxMetadataSize}
	}
	return nil
}

// marshalUserData encodes user data; nil encodes as JSON null, which
// observers read as "no user data".
func marshalUserData(v any) (string, error) {
	var b []byte
	switch x := v.(type) {
	case json.RawMessage:
		b = x
		if len(b) == 0 {
			b = []byte("null")
		}
		if !json.Valid(b) {
			return "", fmt.Errorf("%w: user data is not valid JSON", ErrInvalidJSON)
		}
	default:
		var err error
		b, err = json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("%w: user data: %v", ErrInvalidJSON, err)
		}
	}
	return string(b), nil
}

// SetMetadata sets the local participant's metadata (LiveKit's vocabulary)
// and returns once the server has applied it. The token needs the
// canUpdateOwnMetadata grant, else the error is a *PermissionError.
//
// LiveKit ignores an empty metadata string, so SetMetadata("") is refused
// with ErrInvalidArgument; SetUserData(nil) clears user data.
func (r *Room) SetMetadata(ctx context.Context, metadata string) error {
	if metadata == "" {
		return fmt.Errorf("%w: LiveKit cannot set metadata to the empty string; use SetUserData(ctx, nil) to clear user data", ErrInvalidArgument)
	}
	if err := checkMetadata(metadata); err != nil {
		return err
	}
	return r.updateSelf(ctx, "SetMetadata", &lkpb.UpdateParticipantMetadata{Metadata: metadata})
}

// SetUserData sets the local participant's user data (Daily's vocabulary):
// the JSON encoding of v becomes the participant's metadata, visible to
// everyone in the room and to later joiners. v may be any value that
// encoding/json accepts, or a json.RawMessage; nil clears the user data (the
// metadata becomes the JSON text null). It returns once the server has
// applied the change.
func (r *Room) SetUserData(ctx context.Context, v any) error {
	s, err := marshalUserData(v)
	if err != nil {
		return err
	}
	if err := checkMetadata(s); err != nil {
		return &SizeError{What: "user data", Size: len(s), Limit: MaxMetadataSize}
	}
	return r.updateSelf(ctx, "SetUserData", &lkpb.UpdateParticipantMetadata{Metadata: s})
}

// SetName sets the local participant's display name and returns once the
// server has applied it. LiveKit ignores an empty name, so SetName("") is
// refused with ErrInvalidArgument.
func (r *Room) SetName(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("%w: LiveKit cannot set a name to the empty string", ErrInvalidArgument)
	}
	if len(name) > MaxNameSize {
		return &SizeError{What: "name", Size: len(name), Limit: MaxNameSize}
	}
	return r.updateSelf(ctx, "SetName", &lkpb.UpdateParticipantMetadata{Name: name})
}

// SetAttributes updates the local participant's attributes: each key is set
// to its value, a key set to "" is deleted, and keys not named are kept. It
// returns once the server has applied the change.
func (r *Room) SetAttributes(ctx context.Context, attrs map[string]string) error {
	if len(attrs) == 0 {
		return nil
	}
	r.mu.Lock()
	merged := maps.Clone(r.local.Attributes)
	r.mu.Unlock()
	if merged == nil {
		merged = map[string]string{}
	}
	for k, v := range attrs {
		if k == "" {
			return fmt.Errorf("%w: empty attribute key", ErrInvalidArgument)
		}
		if v == "" {
			delete(merged, k)
		} else {
			merged[k] = v
		}
	}
	size := 0
	for k, v := range merged {
		size += len(k) + len(v)
	}
	if size > MaxAttributesSize {
		return &SizeError{What: "attributes", Size: size, Limit: MaxAttributesSize}
	}
	return r.updateSelf(ctx, "SetAttributes", &lkpb.UpdateParticipantMetadata{Attributes: maps.Clone(attrs)})
}

// WaitForParticipant returns the remote participant with the given
// identity as soon as the Room knows it: at once if it is in the room,
// otherwise when it joins (LiveKit may announce a participant that does
// not publish media a few seconds after it joined). It returns ctx's error
// if that does not happen before ctx ends, and ErrClosed if the Room ends.
// Addressing a message To a participant that just joined needs this.
func (r *Room) WaitForParticipant(ctx context.Context, identity string) (Participant, error) {
	st, sub := r.SubscribeWithSnapshot(&SubscribeOptions{MaxEvents: 16, Filter: func(e Event) bool {
		j, ok := e.(ParticipantJoined)
		return ok && j.Participant.Identity == identity
	}})
	defer sub.Close()
	for _, p := range st.Remote {
		if p.Identity == identity {
			return p, nil
		}
	}
	for {
		select {
		case e, ok := <-sub.Events():
			if !ok {
				return Participant{}, r.endError()
			}
			switch e := e.(type) {
			case ParticipantJoined:
				return e.Participant, nil
			case Disconnected:
				return Participant{}, r.endError()
			case EventsDropped:
				if p, ok := r.Participant(identity); ok && p.Identity != r.LocalParticipant().Identity {
					return p, nil
				}
			}
		case <-ctx.Done():
			return Participant{}, fmt.Errorf("callstate: waiting for participant %q: %w", identity, ctx.Err())
		}
	}
}

// applyParticipantsLocked merges participant infos from the server and
// emits the resulting events; r.mu held.
func (r *Room) applyParticipantsLocked(now time.Time, infos []*lkpb.ParticipantInfo) {
	for _, pi := range infos {
		if pi.GetIdentity() == r.local.Identity {
			if pi.GetState() == lkpb.ParticipantInfo_DISCONNECTED || pi.GetSid() != r.local.SID {
				continue
			}
			if pi.GetVersion() <= r.local.Version {
				continue
			}
			p := participantFromInfo(pi)
			prev := r.local
			r.local = p
			if c := diffParticipants(prev, p); c.Any() {
				r.emitLocked(ParticipantUpdated{Time: now, Participant: p, Previous: prev, Changes: c, Local: true})
			}
			continue
		}
		old, known := r.remotes[pi.GetIdentity()]
		if pi.GetState() == lkpb.ParticipantInfo_DISCONNECTED {
			if known && old.SID == pi.GetSid() {
				r.emitDataTrackChangesLocked(now, old, withoutDataTracks(old))
				r.removeRemoteLocked(old)
				delete(r.qualities, old.SID)
				delete(r.lastSeq, old.SID)
				r.asm.Forget(old.Identity)
				r.participantGoneLocked(old)
				r.session.poke() // its lost session-data writes are ours to repair now
				r.emitLocked(ParticipantLeft{Time: now, Participant: old, Reason: DisconnectReason(pi.GetDisconnectReason())})
			}
			continue
		}
		p := participantFromInfo(pi)
		switch {
		case !known:
			if r.putRemoteLocked(p, Participant{}) {
				r.emitLocked(ParticipantJoined{Time: now, Participant: p})
				r.emitDataTrackChangesLocked(now, Participant{}, p)
			}
		case old.SID != p.SID:
			// The identity joined again; the old session is gone.
			if !r.putRemoteLocked(p, old) {
				r.removeRemoteLocked(old)
			}
			delete(r.lastSeq, old.SID)
			r.asm.Forget(old.Identity)
			r.emitDataTrackChangesLocked(now, old, withoutDataTracks(old))
			r.participantGoneLocked(old)
			r.emitLocked(ParticipantLeft{Time: now, Participant: old, Reason: ReasonDuplicateIdentity})
			r.emitLocked(ParticipantJoined{Time: now, Participant: p})
			r.emitDataTrackChangesLocked(now, Participant{}, p)
		case p.Version > old.Version || p.Version == old.Version && !sameDataTracks(old.DataTracks, p.DataTracks):
			// LiveKit's server does not count a data track (un)publication
			// as a new version of the participant: an update of the same
			// version with other tracks is news.
			if !r.putRemoteLocked(p, old) {
				continue // over the byte bound: the Room keeps the old state
			}
			if c := diffParticipants(old, p); c.Any() {
				r.emitLocked(ParticipantUpdated{Time: now, Participant: p, Previous: old, Changes: c})
			}
			r.emitDataTrackChangesLocked(now, old, p)
		}
	}
}

// Default bounds of the participant state a Room keeps.
const (
	// DefaultMaxParticipants is the default number of remote participants
	// a Room keeps (see JoinOptions.MaxParticipants).
	DefaultMaxParticipants = 20000
	// DefaultMaxParticipantBytes is the default bound of the remote
	// participants' state a Room keeps, in bytes: their metadata, names,
	// identities and attributes.
	DefaultMaxParticipantBytes = 256 << 20
)

// putRemoteLocked stores p in place of old (the zero Participant when p is
// new), within the Room's bounds; it reports whether it did. A participant
// the bounds leave out is counted: a server, honest or not, cannot make the
// Room hold more than JoinOptions allows. r.mu held.
func (r *Room) putRemoteLocked(p, old Participant) bool {
	_, known := r.remotes[p.Identity]
	bytes := r.remoteBytes - participantSize(old) + participantSize(p)
	if (!known && len(r.remotes) >= r.opts.MaxParticipants) || bytes > r.opts.MaxParticipantBytes {
		r.refused++
		return false
	}
	r.remotes[p.Identity] = p
	r.remoteBytes = bytes
	return true
}

// removeRemoteLocked forgets a remote participant; r.mu held.
func (r *Room) removeRemoteLocked(p Participant) {
	if _, ok := r.remotes[p.Identity]; !ok {
		return
	}
	delete(r.remotes, p.Identity)
	r.remoteBytes -= participantSize(p)
}

// leaveUnlistedLocked makes the remote participants that others (the full
// list a new session or a moved room came with) does not list as present
// leave, with their events; r.mu held.
func (r *Room) leaveUnlistedLocked(now time.Time, others []*lkpb.ParticipantInfo) {
	there := make(map[string]bool, len(others))
	for _, pi := range others {
		there[pi.GetIdentity()] = pi.GetState() != lkpb.ParticipantInfo_DISCONNECTED
	}
	var gone []*lkpb.ParticipantInfo
	for id, p := range r.remotes {
		if !there[id] {
			gone = append(gone, &lkpb.ParticipantInfo{Identity: id, Sid: p.SID, State: lkpb.ParticipantInfo_DISCONNECTED})
		}
	}
	r.applyParticipantsLocked(now, gone)
}

func diffParticipants(a, b Participant) Changes {
	var c Changes
	c.Metadata = a.Metadata != b.Metadata
	if c.Metadata {
		_, oka := a.UserData()
		_, okb := b.UserData()
		c.UserData = oka || okb
	}
	c.Name = a.Name != b.Name
	c.Permissions = a.Permissions != b.Permissions
	for k, v := range b.Attributes {
		old, ok := a.Attributes[k]
		switch {
		case !ok:
			c.AttributesAdded = append(c.AttributesAdded, k)
		case old != v:
			c.AttributesChanged = append(c.AttributesChanged, k)
		}
	}
	for k := range a.Attributes {
		if _, ok := b.Attributes[k]; !ok {
			c.AttributesRemoved = append(c.AttributesRemoved, k)
		}
	}
	sort.Strings(c.AttributesAdded)
	sort.Strings(c.AttributesChanged)
	sort.Strings(c.AttributesRemoved)
	return c
}

// withoutDataTracks is p after it left: its tracks are gone with it.
func withoutDataTracks(p Participant) Participant {
	p.DataTracks = nil
	return p
}

func sameDataTracks(a, b []DataTrackInfo) bool { return slices.Equal(a, b) }
