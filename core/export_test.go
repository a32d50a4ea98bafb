package core

// ReceiveGather bounds how long a busy worker waits for more free slots
// before a receive.
const ReceiveGather = receiveGather
