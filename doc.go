// Package callstate is a Go SDK for the shared state of a real-time call.
//
// Go programs — bots, recorders, integration tests that script call
// scenarios — join a room as participants and share state with everyone in
// it. callstate speaks LiveKit's wire protocol (WebSocket signalling with
// protobuf, WebRTC data channels), so it runs against LiveKit servers and
// clusters, and a LiveKit browser app in the same room sees and sends the
// same state.
//
// # One model, two vocabularies
//
// callstate offers both Daily's and LiveKit's names for the same state:
//
//	Daily                        LiveKit                      callstate
//	---------------------------  ---------------------------  ------------------------------------------
//	call object                  Room                         Room (Join, Close)
//	user data                    participant metadata         SetUserData / Participant.UserData
//	                                                          SetMetadata / Participant.Metadata
//	user name                    participant name             SetName / Participant.Name
//	                             participant attributes       SetAttributes / Participant.Attributes
//	custom session data          room metadata                SetSessionData / Room.SessionData
//	                                                          Room.Metadata (raw)
//	app message                  data packet on a topic       SendAppMessage / AppMessage event
//	                             data packet                  PublishData / DataReceived event
//	                             RPC                          RegisterRpcMethod / PerformRpc
//	                             data streams                 SendText, SendBytes, SendFile, StreamText,
//	                                                          StreamBytes / Register*StreamHandler
//	                             chat (lk.chat)               SendChatMessage / ChatMessage event
//	                             RoomService                  RoomService
//	meeting token                access token                 NewToken
//
// The mappings, so that a LiveKit app can read and write the same values:
//
//   - User data is the JSON text of the participant's metadata. SetUserData(v)
//     sets the metadata to the JSON encoding of v; SetUserData(nil) sets it to
//     the JSON text null, which reads as "no user data". Metadata that is not
//     JSON is still a participant's metadata, but it has no user data.
//   - Session data is the JSON object in the room's metadata. Room metadata
//     that is not a JSON object gives empty session data and stays available
//     raw through Room.Metadata. callstate keeps a reserved key in the object
//     for its merge bookkeeping; SessionData never shows it (see
//     SetSessionData).
//   - An app message is a reliable data packet on the topic AppMessageTopic
//     whose payload is the message's JSON text.
//
// # Events
//
// A Room delivers every change it observes — participants joining, leaving
// and changing, data, app messages, session data, connection state — as an
// Event on the channels of its subscriptions (Room.Subscribe). Each
// subscription gets every event in the order the Room observed it. The Room
// never blocks on a subscriber: each subscription has a buffer bounded in
// events and bytes, and an overflow is counted and reported in sequence with
// an EventsDropped event. Events are delivered outside the Room's locks, as
// private copies: code that handles events may call any Room method and
// change what it received.
// Room.SubscribeWithSnapshot returns the current state and a subscription to
// every later event atomically, so a recorder neither misses nor
// double-counts a change.
//
// # Options
//
// Options are plain structs, one per kind of call, passed by pointer; nil,
// like the zero value of every field, means the defaults: JoinOptions for
// Join, PublishOptions for PublishData, SubscribeOptions for Subscribe.
// Network settings that are rarely changed live in the pion SettingEngine
// that NewSettingEngine returns pre-tuned.
//
// # RPC, data streams and chat
//
// RegisterRpcMethod answers LiveKit RPC calls on goroutines of its own (at
// most MaxRpcHandlers at once); PerformRpc calls another participant's
// method, failing with an *RpcError carrying LiveKit's codes or the
// handler's. Data streams are Go streams: a StreamWriter is an
// io.WriteCloser whose writes block while the transport is busy, and a
// stream handler reads a ByteStreamReader or TextStreamReader, an io.Reader
// yielding bytes as they arrive, with memory bounded per stream
// (StreamBufferSize; see there for what a slow reader costs and when it
// loses its stream). SendText, SendBytes and SendFile compress their content
// with raw deflate when every recipient can inflate it, as livekit-client
// does (see StreamOptions.NoCompression); readers inflate what arrives
// compressed. SendChatMessage and the ChatMessage event are LiveKit's chat.
//
// # Errors
//
// Bad input is refused before anything is sent, with an error that matches
// one of the package's sentinel errors (ErrTooLarge, ErrNotPermitted,
// ErrInvalidJSON, ErrInvalidArgument, ErrUnknownParticipant, ...) and, where
// callers need details, is a typed error (*SizeError, *PermissionError,
// *JoinError, *RequestError, *ServerError). Updates wait for the server's
// answer and return its outcome: nothing is fire-and-forget.
//
// # Testing
//
// Package calltest starts a real LiveKit server on the loopback interface
// for tests and local tools; see its documentation.
package callstate
