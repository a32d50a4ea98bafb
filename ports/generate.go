package ports

// mockgen is pinned by the tool directive in tools/go.mod (a module of its own,
// so a service that requires dagq does not inherit it); the -modfile path is
// relative to this directory, where go generate runs.
//go:generate go tool -modfile=../tools/go.mod mockgen -typed -destination=portsmock/mocks.go -package=portsmock github.com/dagq/dagq/ports Broker,ResultBackend,CancelChannel,CancelSubscription,CompletionBus,Inbox,PayloadStore,StateStore,Requeuer,DeadLetterer,ResultDeleter
