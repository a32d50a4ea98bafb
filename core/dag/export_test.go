package dag

// The StateStore keys of a run's record and heartbeat, for tests that plant
// records.
var (
	RunRecordKey    = runRecordKey
	RunHeartbeatKey = runHeartbeatKey
	RunJobKey       = runJobKey
)

// RunIndexKey is the run index key of a record, for tests that plant keys.
var RunIndexKey = runIndexKey
