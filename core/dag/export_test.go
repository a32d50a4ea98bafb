package dag

// The StateStore keys of a run's record and heartbeat, for tests that plant
// records.
var (
	RunRecordKey    = runRecordKey
	RunHeartbeatKey = runHeartbeatKey
)
