package callstate

import (
	"context"
	"fmt"

	"github.com/callstate/callstate/internal/lkpb"
)

// Scenario is a failure the server acts out for the Room on request
// (LiveKit's SignalRequest.simulate), so that a test can watch the Room
// recover from it against a real server. See Room.Simulate.
type Scenario int

const (
	// ScenarioNodeFailure: the server drops the participant as if its node
	// had failed, without a leave; the Room finds its session gone and
	// rejoins.
	ScenarioNodeFailure Scenario = iota + 1
	// ScenarioMigration: the server drops the participant as for a
	// migration to another node; the Room rejoins.
	ScenarioMigration
	// ScenarioServerLeave: the server closes the participant with a leave
	// request (reason and action chosen by the server).
	ScenarioServerLeave
	// ScenarioSignalReconnect: the server closes the signalling connection
	// of the Room's next resume as soon as it is made (within 5 s of the
	// request), so that the resume itself fails once; cut the signalling
	// to make the Room resume.
	ScenarioSignalReconnect
	// ScenarioSignalReconnectNoMessages is ScenarioSignalReconnect with the
	// connection closed before the server sends anything on it.
	ScenarioSignalReconnectNoMessages
	// ScenarioFullReconnect: the server asks for a full reconnect with a
	// leave request. livekit-server v1.13.5 does not act on it yet.
	ScenarioFullReconnect
)

// String names the scenario.
func (s Scenario) String() string {
	switch s {
	case ScenarioNodeFailure:
		return "node failure"
	case ScenarioMigration:
		return "migration"
	case ScenarioServerLeave:
		return "server leave"
	case ScenarioSignalReconnect:
		return "signal reconnect"
	case ScenarioSignalReconnectNoMessages:
		return "signal reconnect without messages"
	case ScenarioFullReconnect:
		return "full reconnect"
	}
	return fmt.Sprintf("scenario %d", int(s))
}

// Simulate asks the server to act out s for this Room. It returns once the
// request is written; what follows (a drop, a leave, a failed resume) comes
// as events, as a real failure would. An unknown scenario is refused with
// ErrInvalidArgument.
func (r *Room) Simulate(ctx context.Context, s Scenario) error {
	var m lkpb.SimulateScenario
	switch s {
	case ScenarioNodeFailure:
		m.Scenario = &lkpb.SimulateScenario_NodeFailure{NodeFailure: true}
	case ScenarioMigration:
		m.Scenario = &lkpb.SimulateScenario_Migration{Migration: true}
	case ScenarioServerLeave:
		m.Scenario = &lkpb.SimulateScenario_ServerLeave{ServerLeave: true}
	case ScenarioSignalReconnect:
		m.Scenario = &lkpb.SimulateScenario_DisconnectSignalOnResume{DisconnectSignalOnResume: true}
	case ScenarioSignalReconnectNoMessages:
		m.Scenario = &lkpb.SimulateScenario_DisconnectSignalOnResumeNoMessages{DisconnectSignalOnResumeNoMessages: true}
	case ScenarioFullReconnect:
		m.Scenario = &lkpb.SimulateScenario_LeaveRequestFullReconnect{LeaveRequestFullReconnect: true}
	default:
		return fmt.Errorf("%w: unknown scenario %d", ErrInvalidArgument, int(s))
	}
	if err := r.checkOpen(); err != nil {
		return err
	}
	if err := r.signal().Send(ctx, &lkpb.SignalRequest{Message: &lkpb.SignalRequest_Simulate{Simulate: &m}}); err != nil {
		return fmt.Errorf("callstate: simulating %s: %w", s, err)
	}
	return nil
}
