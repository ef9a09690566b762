package callstate

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"
)

// sessionData tracks the session data view of the room metadata.
type sessionData struct {
	data map[string]json.RawMessage
}

func newSessionData() *sessionData { return &sessionData{} }

// observe takes a new room metadata value and returns the event to emit.
func (s *sessionData) observe(now time.Time, metadata string) (SessionDataUpdated, bool) {
	var m map[string]json.RawMessage
	if metadata != "" {
		if err := json.Unmarshal([]byte(metadata), &m); err != nil {
			m = nil
		}
	}
	var changed []string
	for k, v := range m {
		if old, ok := s.data[k]; !ok || string(old) != string(v) {
			changed = append(changed, k)
		}
	}
	for k := range s.data {
		if _, ok := m[k]; !ok {
			changed = append(changed, k)
		}
	}
	s.data = m
	if len(changed) == 0 {
		return SessionDataUpdated{}, false
	}
	slices.Sort(changed)
	return SessionDataUpdated{at: at{now}, Data: maps.Clone(m), Changed: changed}, true
}

func (s *sessionData) dataLocked() map[string]json.RawMessage { return maps.Clone(s.data) }

func (s *sessionData) afterObserveLocked(*Room) {}

// Strategy says how SetSessionData combines new data with the current
// session data.
type Strategy int

const (
	// Replace makes the given object the whole session data.
	Replace Strategy = iota
	// ShallowMerge sets the given top-level keys and keeps the others; a
	// key set to null is deleted; nested objects are replaced, not merged.
	ShallowMerge
)

// SessionData returns the session data (Daily's custom session data): the
// JSON object in the room's metadata, without callstate's reserved key. It
// is nil when the room metadata is not a JSON object.
func (r *Room) SessionData() map[string]json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.session.dataLocked()
}

// SetSessionData is not yet implemented.
func (r *Room) SetSessionData(ctx context.Context, data any, strategy Strategy) error {
	return errors.New("not implemented")
}
