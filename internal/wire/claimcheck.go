package wire

// PayloadAttribute is the message attribute of a claim-check message: an
// envelope larger than the client's payload threshold is stored in the
// ports.PayloadStore under the key "<task ID>/<random ID>" and the message
// carries that key in this attribute, with a ClaimCheck as its body. A
// worker with a payload store fetches the envelope (and verifies its
// signature) before decoding it, and deletes the object once the message is
// acked.
const PayloadAttribute = "dagq-payload"

// ClaimCheck is the placeholder body of a claim-check message: JSON with the
// task ID, name, payload key and reply_to, but no "v", so that a worker that
// knows nothing of claim checks fails it as undecodable instead of running
// the task without its arguments.
type ClaimCheck struct {
	TaskID  string `json:"id"`
	Task    string `json:"task"`
	Payload string `json:"payload"`
	ReplyTo string `json:"reply_to,omitempty"`
}
