package callstate

import (
	"encoding/json"
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
