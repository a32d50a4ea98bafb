package ports

//go:generate go tool mockgen -typed -destination=portsmock/mocks.go -package=portsmock github.com/dagq/dagq/ports Broker,ResultBackend,CancelChannel,CancelSubscription,CompletionBus,Inbox,PayloadStore,StateStore
