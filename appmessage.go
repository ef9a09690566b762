package callstate

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/callstate/callstate/internal/chunk"
)

// AppMessageTopic is the data-packet topic that carries app messages. An app
// message is a reliable LiveKit data packet on this topic whose payload is
// the message's JSON text (UTF-8); messages larger than one packet travel as
// a LiveKit text stream on the same topic. A LiveKit browser app sends one
// with
//
//	room.localParticipant.publishData(new TextEncoder().encode(JSON.stringify(msg)),
//	    {reliable: true, topic: "callstate.app-message"})
//
// and receives them from the DataReceived event (and, for large ones, with
// registerTextStreamHandler) on this topic.
const AppMessageTopic = "callstate.app-message"

// SendAppMessage sends data, as JSON, to everyone else in the room or only
// to the participants named in to (Daily's app messages). "*" or no
// recipient means everyone. The message is reliable; the receivers get an
// AppMessage event with the sender's identity; the sender does not receive
// its own message.
//
// data may be any value that encoding/json accepts; a json.RawMessage or a
// []byte is sent as is and must be valid JSON. Messages of any size up to the
// Room's maximum message size are carried (Daily caps them at 4 KB).
func (r *Room) SendAppMessage(ctx context.Context, data any, to ...string) error {
	b, dest, err := appMessage(data, to)
	if err != nil {
		return err
	}
	return r.send(ctx, "SendAppMessage", chunk.Message{
		Topic:        AppMessageTopic,
		Payload:      b,
		Destinations: dest,
		Reliable:     true,
		Text:         true,
		MimeType:     "application/json",
	})
}

// SendAppMessage sends an app message from the server to everyone in room,
// or only to the participants named in to ("*" or none means everyone).
// Receivers get an AppMessage event with FromServer set and no sender. The
// message must fit one reliable packet (about 15 KiB); data is encoded as
// by Room.SendAppMessage.
//
// LiveKit drops server data for a participant whose data channel it has
// not registered yet, which can be a moment after that participant's Join
// returned; the call still succeeds.
func (s *RoomService) SendAppMessage(ctx context.Context, room string, data any, to ...string) error {
	b, dest, err := appMessage(data, to)
	if err != nil {
		return err
	}
	return s.sendData(ctx, room, b, dataOptions{topic: AppMessageTopic, to: dest})
}

// appMessage validates and encodes an app message and its recipients.
func appMessage(data any, to []string) ([]byte, []string, error) {
	var b []byte
	switch x := data.(type) {
	case json.RawMessage:
		b = x
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(data); err != nil {
			return nil, nil, fmt.Errorf("%w: app message: %v", ErrInvalidJSON, err)
		}
	}
	if !json.Valid(b) {
		return nil, nil, fmt.Errorf("%w: app message is not valid JSON", ErrInvalidJSON)
	}
	var dest []string
	for _, id := range to {
		if id == "*" {
			dest = nil
			break
		}
		dest = append(dest, id)
	}
	return b, dest, nil
}
