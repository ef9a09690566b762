package main

import (
	"context"
	"flag"
	"strconv"
	"time"

	"github.com/callstate/callstate"
)

var roomVerbs = []subcommand{
	{"list", "[room...]", "list the active rooms (or the named ones)", runRoomList},
	{"create", "<room>", "create a room, or show the existing one", runRoomCreate},
	{"delete", "<room>", "delete a room, disconnecting its participants", runRoomDelete},
	{"update-metadata", "<room> <metadata>", "set a room's metadata (its session data, as JSON)", runRoomUpdateMetadata},
}

func roomFlags(e *env) *flag.FlagSet {
	return apiGroupFlags(e, "room", "Room lists, creates, deletes rooms and sets their metadata through the server API.", roomVerbs)
}

func runRoom(ctx context.Context, args []string, e *env) int {
	return runVerbs(ctx, "room", roomVerbs, args, e)
}

// printRooms prints rooms as JSON lines, one per room, or as a table.
func printRooms(e *env, a *apiFlags, rooms []callstate.RoomInfo) {
	if !a.wantTable(e.stdout) {
		for _, r := range rooms {
			writeJSON(e.stdout, r)
		}
		return
	}
	rows := make([][]string, 0, len(rooms))
	for _, r := range rooms {
		rows = append(rows, []string{r.Name, r.SID, strconv.Itoa(r.NumParticipants), strconv.Itoa(r.MaxParticipants),
			r.CreatedAt.Format(time.DateTime), truncate(r.Metadata, 40)})
	}
	table(e.stdout, []string{"NAME", "SID", "PARTICIPANTS", "MAX", "CREATED", "METADATA"}, rows)
}

// truncate shortens s for a table cell.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func runRoomList(ctx context.Context, args []string, e *env) int {
	var a apiFlags
	fs := verbFlags(e, "room", "list", "[flags] [room...]", "List prints the active rooms, or those named, one JSON object a line (or a table).", &a)
	names, code, ok := parseArgs(fs, args, 0, 1<<20)
	if !ok {
		return code
	}
	rs, code := a.service(fs)
	if rs == nil {
		return code
	}
	rooms, err := rs.ListRooms(ctx, names...)
	if err != nil {
		return fail(e, "room list", err)
	}
	printRooms(e, &a, rooms)
	return exitOK
}

func runRoomCreate(ctx context.Context, args []string, e *env) int {
	var a apiFlags
	var o callstate.CreateRoomOptions
	fs := verbFlags(e, "room", "create", "[flags] <room>", "Create creates a room, or finds the existing room of that name, and prints it.", &a)
	fs.DurationVar(&o.EmptyTimeout, "empty-timeout", 0, "how long the room lives while nobody joined it (0: the server's default)")
	fs.DurationVar(&o.DepartureTimeout, "departure-timeout", 0, "how long the room lives after the last participant left (0: the server's default)")
	fs.IntVar(&o.MaxParticipants, "max-participants", 0, "participant limit (0: none)")
	fs.StringVar(&o.Metadata, "metadata", "", "the room's initial `metadata` (JSON for session data)")
	rs, pos, code, ok := a.parseVerb(fs, args, 1, 1)
	if !ok {
		return code
	}
	o.Name = pos[0]
	info, err := rs.CreateRoom(ctx, o)
	if err != nil {
		return fail(e, "room create", err)
	}
	printRooms(e, &a, []callstate.RoomInfo{info})
	return exitOK
}

func runRoomDelete(ctx context.Context, args []string, e *env) int {
	var a apiFlags
	fs := verbFlags(e, "room", "delete", "[flags] <room>", "Delete deletes a room and disconnects its participants. It prints nothing.", &a)
	rs, pos, code, ok := a.parseVerb(fs, args, 1, 1)
	if !ok {
		return code
	}
	if err := rs.DeleteRoom(ctx, pos[0]); err != nil {
		return fail(e, "room delete", err)
	}
	return exitOK
}

func runRoomUpdateMetadata(ctx context.Context, args []string, e *env) int {
	var a apiFlags
	fs := verbFlags(e, "room", "update-metadata", "[flags] <room> <metadata>", "Update-metadata sets a room's metadata and prints the room.", &a)
	rs, pos, code, ok := a.parseVerb(fs, args, 2, 2)
	if !ok {
		return code
	}
	info, err := rs.UpdateRoomMetadata(ctx, pos[0], pos[1])
	if err != nil {
		return fail(e, "room update-metadata", err)
	}
	printRooms(e, &a, []callstate.RoomInfo{info})
	return exitOK
}
