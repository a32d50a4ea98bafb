package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/ports"
)

// FieldError is one invalid configuration value.
type FieldError struct {
	// Key is the dotted key path.
	Key string
	// Source is where the value came from ("file dagq.yaml", "env DAGQ_…",
	// "flag --…", "default"); empty when unknown.
	Source string
	// Msg says what is wrong and what would be valid.
	Msg string
	// Line is the line of the value in the config file when Source is the
	// file (0: unknown); the message then names "file dagq.yaml:5".
	Line int
}

func (e *FieldError) Error() string {
	if e.Source != "" && e.Source != "default" {
		source := e.Source
		if e.Line > 0 && strings.HasPrefix(source, "file ") {
			source += ":" + strconv.Itoa(e.Line)
		}
		return fmt.Sprintf("%s (%s): %s", e.Key, source, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Key, e.Msg)
}

// Notices returns settings that are valid but have no effect, each naming
// its key and what to do, for the caller to print as warnings: sqs.fair_queue
// "on" with standard queues (message groups need FIFO queues; the setting
// is ignored for them). app.New logs them, unless its caller printed them.
func (c Config) Notices() []string {
	var out []string
	if c.Transport == TransportSQS && c.SQS.FairQueue == "on" {
		for _, k := range []struct{ key, url string }{{"sqs.queue_url", c.SQS.QueueURL}, {"sqs.run_queue_url", c.SQS.RunQueueURL}} {
			if k.url != "" && !IsFIFO(QueueName(k.url)) {
				out = append(out, fmt.Sprintf("sqs.fair_queue: on, but %s %q is a standard queue: message groups need a FIFO queue, so the setting is ignored for it; valid: auto (or off) for standard queues, or a .fifo queue",
					k.key, k.url))
			}
		}
	}
	return out
}

// ErrInvalid is matched (errors.Is) by every error of Validate.
var ErrInvalid = errors.New("invalid configuration")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Log formats: auto picks text when the log output (stderr) is a terminal
// and JSON otherwise.
const (
	LogFormatAuto = "auto"
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// Log levels and formats accepted by the log keys.
var (
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{LogFormatAuto, LogFormatText, LogFormatJSON}
)

// Limits of the numeric keys.
const (
	MaxConcurrency = 10000
	// MaxSettleDepth bounds worker.settle_depth.
	MaxSettleDepth = 10000
	// MaxPrefetch bounds worker.prefetch.
	MaxPrefetch = 10000
	// MaxDeadLetterSweep bounds worker.dead_letter_sweep: SQS keeps a DLQ's
	// messages at most 14 days.
	MaxDeadLetterSweep = 24 * time.Hour
	// MinRegistryInterval and MaxRegistryInterval bound
	// worker.registry_interval (other than 0s, off).
	MinRegistryInterval = time.Second
	MaxRegistryInterval = time.Hour
)

// Validate checks every key and returns all problems joined (nil when the
// configuration is valid); each is a *FieldError naming the key and the valid
// values or range. Pass Loaded.Sources (or nil) to name where each bad value
// came from.
func (c Config) Validate() error { return c.ValidateSources(nil) }

// ValidateSources is Validate with the sources of Load, so that each error
// also says where its value was set.
func (c Config) ValidateSources(sources map[string]string) error { return c.validate(sources, nil) }

// ValidateLoaded is Validate with what Load says of the configuration: each
// error names where its value was set and, for the config file, its line
// ("worker.lease (file dagq.yaml:3): …").
func (c Config) ValidateLoaded(l *Loaded) error {
	if l == nil {
		return c.Validate()
	}
	return c.validate(l.Sources, l.Lines)
}

func (c Config) validate(sources map[string]string, lines map[string]int) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Source: sources[key], Line: lines[key], Msg: fmt.Sprintf(format, args...)})
	}

	switch {
	case slices.Contains(SupportedTransports, c.Transport):
	default:
		bad("transport", "%q is not a transport; valid values: %s", c.Transport, strings.Join(SupportedTransports, ", "))
	}
	if err := validQueueName(c.Queue); err != "" {
		bad("queue", "%q %s", c.Queue, err)
	}

	w := c.Worker
	if w.Concurrency < 1 || w.Concurrency > MaxConcurrency {
		bad("worker.concurrency", "%d is out of range; valid: 1 to %d", w.Concurrency, MaxConcurrency)
	}
	leaseOK := w.Lease > 0 && w.Lease <= ports.MaxLease
	if !leaseOK {
		bad("worker.lease", "%s is out of range; valid: more than 0s, at most %s", FormatDuration(w.Lease), FormatDuration(ports.MaxLease))
	}
	switch {
	case w.HeartbeatInterval < 0:
		bad("worker.heartbeat_interval", "%s is negative; valid: 0 (lease/3) or up to half of worker.lease", FormatDuration(w.HeartbeatInterval))
	case leaseOK && w.HeartbeatInterval > w.Lease/2:
		bad("worker.heartbeat_interval", "%s is more than half of worker.lease (%s); valid: 0 (lease/3) or up to %s",
			FormatDuration(w.HeartbeatInterval), FormatDuration(w.Lease), FormatDuration(w.Lease/2))
	}
	if w.MaxExtensions < 1 {
		bad("worker.max_extensions", "%d is out of range; valid: 1 or more", w.MaxExtensions)
	}
	if w.ShutdownTimeout <= 0 {
		bad("worker.shutdown_timeout", "%s is out of range; valid: more than 0s", FormatDuration(w.ShutdownTimeout))
	}
	if w.SettleDepth < 1 || w.SettleDepth > MaxSettleDepth {
		bad("worker.settle_depth", "%d is out of range; valid: 1 to %d", w.SettleDepth, MaxSettleDepth)
	}
	if w.Prefetch < 0 || w.Prefetch > MaxPrefetch {
		bad("worker.prefetch", "%d is out of range; valid: 0 (none) to %d", w.Prefetch, MaxPrefetch)
	}
	if w.DeadLetterSweep < 0 || w.DeadLetterSweep > MaxDeadLetterSweep {
		bad("worker.dead_letter_sweep", "%s is out of range; valid: 0s (never) to %s", FormatDuration(w.DeadLetterSweep), FormatDuration(MaxDeadLetterSweep))
	}
	if ri := w.RegistryInterval; ri != 0 && (ri < MinRegistryInterval || ri > MaxRegistryInterval) {
		bad("worker.registry_interval", "%s is out of range; valid: 0s (off) or %s to %s",
			FormatDuration(ri), FormatDuration(MinRegistryInterval), FormatDuration(MaxRegistryInterval))
	}
	if msg := validListenAddr(w.MetricsAddr); msg != "" {
		bad("worker.metrics_addr", "%q %s; valid: empty (off) or host:port, such as :9090 or 127.0.0.1:9090", w.MetricsAddr, msg)
	}

	c.validatePools(bad)

	r := c.Retry
	if r.MaxAttempts < 1 {
		bad("retry.max_attempts", "%d is out of range; valid: 1 (no retry) or more", r.MaxAttempts)
	}
	if r.InitialBackoff < 0 || r.InitialBackoff > core.MaxTaskDelay {
		bad("retry.initial_backoff", "%s is out of range; valid: 0s to %s", FormatDuration(r.InitialBackoff), FormatDuration(core.MaxTaskDelay))
	}
	switch {
	case r.MaxBackoff < 0 || r.MaxBackoff > core.MaxTaskDelay:
		bad("retry.max_backoff", "%s is out of range; valid: 0 (a cap of %s) to %s", FormatDuration(r.MaxBackoff),
			FormatDuration(ports.MaxLease), FormatDuration(core.MaxTaskDelay))
	case r.MaxBackoff != 0 && r.MaxBackoff < r.InitialBackoff:
		bad("retry.max_backoff", "%s is below retry.initial_backoff (%s); valid: 0 (no cap) or at least retry.initial_backoff",
			FormatDuration(r.MaxBackoff), FormatDuration(r.InitialBackoff))
	}
	if r.Multiplier != 0 && !(r.Multiplier >= 1 && r.Multiplier <= 1000) {
		bad("retry.multiplier", "%v is out of range; valid: 0 (constant delay) or 1 to 1000", r.Multiplier)
	}
	if !(r.Jitter >= 0 && r.Jitter <= 1) {
		bad("retry.jitter", "%v is out of range; valid: 0 to 1", r.Jitter)
	}

	if c.Executor.CancelWait <= 0 || c.Executor.CancelWait > ports.MaxLease {
		bad("executor.cancel_wait", "%s is out of range; valid: more than 0s, at most %s", FormatDuration(c.Executor.CancelWait), FormatDuration(ports.MaxLease))
	}
	if t := c.Payload.Threshold; t < MinPayloadThreshold || t > MaxPayloadThreshold {
		bad("payload.threshold", "%d bytes is out of range; valid: %d to %d (768 KiB: an envelope at the threshold must still fit a 1 MiB SQS message)",
			t, MinPayloadThreshold, MaxPayloadThreshold)
	}
	l := c.Launcher
	switch err := validQueueName(l.Queue); {
	case err != "":
		bad("launcher.queue", "%q %s", l.Queue, err)
	case l.Queue == c.Queue:
		bad("launcher.queue", "%q is also the task queue (queue); valid: a queue name other than %q, e.g. %q",
			l.Queue, c.Queue, Default().Launcher.Queue)
	}
	if l.Concurrency < 1 || l.Concurrency > MaxConcurrency {
		bad("launcher.concurrency", "%d is out of range; valid: 1 to %d", l.Concurrency, MaxConcurrency)
	}
	hbOK := l.HeartbeatInterval > 0 && l.HeartbeatInterval <= ports.MaxLease
	if !hbOK {
		bad("launcher.heartbeat_interval", "%s is out of range; valid: more than 0s, at most %s",
			FormatDuration(l.HeartbeatInterval), FormatDuration(ports.MaxLease))
	}
	switch {
	case l.StaleAfter <= 0 || l.StaleAfter > ports.MaxLease:
		bad("launcher.stale_after", "%s is out of range; valid: more than launcher.heartbeat_interval, at most %s",
			FormatDuration(l.StaleAfter), FormatDuration(ports.MaxLease))
	case hbOK && l.StaleAfter <= l.HeartbeatInterval:
		bad("launcher.stale_after", "%s is not more than launcher.heartbeat_interval (%s); valid: more than it, e.g. %s (3 × the interval)",
			FormatDuration(l.StaleAfter), FormatDuration(l.HeartbeatInterval), FormatDuration(3*l.HeartbeatInterval))
	}

	c.validateAWS(bad)
	c.Signing.validate(bad)
	c.UI.validate(bad)

	if !slices.Contains(LogLevels, strings.ToLower(c.Log.Level)) {
		bad("log.level", "%q is not a level; valid values: %s", c.Log.Level, strings.Join(LogLevels, ", "))
	}
	if !slices.Contains(LogFormats, strings.ToLower(c.Log.Format)) {
		bad("log.format", "%q is not a format; valid values: %s", c.Log.Format, strings.Join(LogFormats, ", "))
	}
	return errors.Join(errs...)
}

// validQueueName applies the SQS naming rules; it returns what is wrong, or "".
func validQueueName(name string) string {
	base := strings.TrimSuffix(name, ".fifo")
	if base == "" || len(name) > 80 {
		return "must have 1 to 80 characters (a FIFO queue's name ends in .fifo)"
	}
	for _, c := range base {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "may only hold letters, digits, - and _ (and end in .fifo for a FIFO queue)"
		}
	}
	return ""
}

// validListenAddr checks a listen address (empty: off); it returns what is
// wrong, or "".
func validListenAddr(addr string) string {
	if addr == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "is not host:port"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "has no valid port (0 to 65535)"
	}
	return ""
}

// Limits of sqs.wait_time (the SQS long-polling range).
const (
	MinSQSWaitTime = time.Second
	MaxSQSWaitTime = 20 * time.Second
	// MaxSQSCancelListLag bounds sqs.cancel_list_lag.
	MaxSQSCancelListLag = 15 * time.Minute
	// MinSQSMaxDelay is the lowest sqs.max_delay (its highest is
	// ports.MaxDelay, the SQS limit).
	MinSQSMaxDelay = time.Second
)

// validateAWS checks the sqs.* and s3.* keys: their form whenever they are
// set, and that the ones the sqs transport needs are set when it is chosen.
func (c Config) validateAWS(bad func(key, format string, args ...any)) {
	sqsT := c.Transport == TransportSQS
	q := c.SQS
	if !slices.Contains(FairQueueModes, q.FairQueue) {
		bad("sqs.fair_queue", "%q is not a mode; valid: %s", q.FairQueue, strings.Join(FairQueueModes, ", "))
	} else if q.FairQueue == "off" {
		for _, k := range []struct{ key, url string }{{"sqs.queue_url", q.QueueURL}, {"sqs.run_queue_url", q.RunQueueURL}} {
			if IsFIFO(QueueName(k.url)) {
				bad("sqs.fair_queue", "off, but %s %q is a FIFO queue, which needs a message group on every message; valid: auto or on, or a standard queue", k.key, k.url)
				break
			}
		}
	}
	if !slices.Contains(MessageGroups, q.MessageGroup) {
		bad("sqs.message_group", "%q is not a group policy; valid: %s", q.MessageGroup, strings.Join(MessageGroups, ", "))
	}
	if q.CancelListLag < 0 || q.CancelListLag > MaxSQSCancelListLag {
		bad("sqs.cancel_list_lag", "%s is out of range; valid: 0s (queues listed at once, as on fauxqs) to %s", FormatDuration(q.CancelListLag),
			FormatDuration(MaxSQSCancelListLag))
	}
	if q.MaxDelay < MinSQSMaxDelay || q.MaxDelay > ports.MaxDelay {
		bad("sqs.max_delay", "%s is out of range; valid: %s to %s (the SQS limit)", FormatDuration(q.MaxDelay),
			FormatDuration(MinSQSMaxDelay), FormatDuration(ports.MaxDelay))
	}
	if q.WaitTime < MinSQSWaitTime || q.WaitTime > MaxSQSWaitTime {
		bad("sqs.wait_time", "%s is out of range; valid: %s to %s", FormatDuration(q.WaitTime),
			FormatDuration(MinSQSWaitTime), FormatDuration(MaxSQSWaitTime))
	}
	if q.Region != "" && !regionRE.MatchString(q.Region) {
		bad("sqs.region", "%q is not an AWS region; valid: a region name such as us-east-1 or eu-west-2, or empty for the AWS chain", q.Region)
	}
	urlOK := map[string]bool{}
	for _, k := range []struct{ key, val, what string }{
		{"sqs.queue_url", q.QueueURL, "task queue"},
		{"sqs.run_queue_url", q.RunQueueURL, "run queue"},
	} {
		switch {
		case k.val == "" && sqsT:
			bad(k.key, "is required with transport %q: the URL of the SQS %s, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/%s",
				TransportSQS, k.what, map[string]string{"sqs.queue_url": "dagq-tasks", "sqs.run_queue_url": "dagq-runs"}[k.key])
		case k.val != "":
			if msg := checkQueueURL(k.val); msg != "" {
				bad(k.key, "%q %s", k.val, msg)
				continue
			}
			urlOK[k.key] = true
			if r := URLRegion(k.val); r != "" && q.Region != "" && r != q.Region {
				bad(k.key, "%q is in region %s but sqs.region is %s; valid: make sqs.region %s (or empty), or use the queue's URL in %s",
					k.val, r, q.Region, r, q.Region)
			}
		}
	}
	if urlOK["sqs.queue_url"] && urlOK["sqs.run_queue_url"] && strings.TrimRight(q.QueueURL, "/") == strings.TrimRight(q.RunQueueURL, "/") {
		bad("sqs.run_queue_url", "%q is also the task queue (sqs.queue_url); valid: the URL of another queue: launched runs hold a run worker's slot for the whole run and need a queue of their own",
			q.RunQueueURL)
	}
	if r1, r2 := URLRegion(q.QueueURL), URLRegion(q.RunQueueURL); r1 != "" && r2 != "" && r1 != r2 && q.Region == "" {
		bad("sqs.run_queue_url", "%q is in region %s but sqs.queue_url is in %s; valid: both queues in one region", q.RunQueueURL, r2, r1)
	}
	if q.Endpoint != "" {
		if msg := checkEndpoint(q.Endpoint); msg != "" {
			bad("sqs.endpoint", "%q %s", q.Endpoint, msg)
		}
	}

	b := c.S3
	switch {
	case b.Bucket == "" && sqsT:
		bad("s3.bucket", "is required with transport %q: the S3 bucket for results, large payloads and run state, e.g. my-dagq-bucket", TransportSQS)
	case b.Bucket != "" && !bucketRE.MatchString(b.Bucket):
		bad("s3.bucket", "%q is not a valid bucket name; valid: 3 to 63 of lower-case letters, digits, . and -, starting and ending with a letter or digit", b.Bucket)
	}
	if b.Prefix != "" && (!strings.HasSuffix(b.Prefix, "/") || strings.HasPrefix(b.Prefix, "/")) {
		bad("s3.prefix", "%q must end with / and not start with one; valid: empty (the bucket root) or e.g. %q", b.Prefix, Default().S3.Prefix)
	}
	if len(b.Prefix) > MaxS3PrefixLen {
		bad("s3.prefix", "is %d bytes; at most %d are valid, so that every key dagq writes fits S3's 1,024-byte object keys "+
			"(<prefix>state/ plus a %d-byte state key)", len(b.Prefix), MaxS3PrefixLen, ports.MaxKeyLen)
	}
	if b.Endpoint != "" {
		if msg := checkEndpoint(b.Endpoint); msg != "" {
			bad("s3.endpoint", "%q %s", b.Endpoint, msg)
		}
	}
}

var (
	regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$`)
	bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	// sqsHostRE matches the AWS SQS hosts that name their region:
	// sqs.<region>.amazonaws.com (and .com.cn), and the legacy
	// <region>.queue.amazonaws.com.
	sqsHostRE = regexp.MustCompile(`^(?:sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com)$`)
)

// URLRegion returns the region an AWS SQS queue URL names in its host, or
// "" when the host is not an AWS SQS endpoint (an emulator, a VPC endpoint).
func URLRegion(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return ""
	}
	m := sqsHostRE.FindStringSubmatch(strings.ToLower(u.Hostname()))
	if m == nil {
		return ""
	}
	return m[1] + m[2]
}

// QueueName returns the queue name of an SQS queue URL (its last path
// segment), or "" when the URL has none.
func QueueName(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return ""
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	return parts[len(parts)-1]
}

// checkQueueURL says what is wrong with an SQS queue URL, or "".
func checkQueueURL(raw string) string {
	const valid = "valid: an http(s) URL of the form https://sqs.<region>.amazonaws.com/<account>/<queue name>"
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "is not an http(s) URL; " + valid
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "has a query or fragment; " + valid
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "has no /<account>/<queue name> path; " + valid
	}
	if msg := validQueueName(parts[1]); msg != "" {
		return fmt.Sprintf("names queue %q, which %s", parts[1], msg)
	}
	return ""
}

// checkEndpoint says what is wrong with an endpoint override, or "".
func checkEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "is not an http(s) URL; valid: empty (the AWS default) or e.g. http://127.0.0.1:19324"
	}
	return ""
}

// MaxS3PrefixLen is the longest s3.prefix: S3 object keys are at most 1,024
// bytes, and the longest key dagq writes is "<prefix>state/" plus a
// StateStore key of up to ports.MaxKeyLen bytes (results and claim-check
// payloads take less: "<prefix>results/" plus a task ID of up to 128 bytes).
const MaxS3PrefixLen = 1024 - len("state/") - ports.MaxKeyLen
