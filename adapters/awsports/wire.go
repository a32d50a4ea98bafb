//go:build wireinject

package awsports

import (
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/wire"

	dagqs3 "github.com/dagq/dagq/adapters/s3"
	dagqsqs "github.com/dagq/dagq/adapters/sqs"
)

// openAdapters builds one handle of each adapter from the adapters' Wire
// sets; the cleanup closes them.
func openAdapters(sqsClient *sqs.Client, s3Client *s3.Client, queue dagqsqs.QueueURL, bucket dagqs3.Bucket,
	brokerOpts *dagqsqs.Options, cancelOpts *dagqsqs.CancelOptions, completionOpts *dagqsqs.CompletionOptions,
	storeOpts *dagqs3.Options) (*adapters, func(), error) {
	wire.Build(dagqsqs.Set, dagqs3.Set, wire.Struct(new(adapters), "*"))
	return nil, nil, nil
}
