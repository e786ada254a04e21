"""One training step of the face job: the per-device losses of a batch and its metrics."""
import mxnet as mx
from mxnet import gluon

import triplet

CROSS_ENTROPY = gluon.loss.SoftmaxCrossEntropyLoss()


def make_metric(loss_name):
    if loss_name == "triplet":
        return mx.metric.CompositeEvalMetric([mx.metric.Loss("loss"), mx.metric.Loss("triplets")])
    return mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), mx.metric.Loss("loss")])


def forward_losses(net, head, xs, ys, args, rng, metric):
    """Per-device losses of one batch (call under autograd.record); updates `metric`.
    head None = triplet loss with --mining on this forward's embeddings (MassFace online)."""
    out = []
    for x, y in zip(xs, ys):
        emb = net(x)
        if head is None:
            found = triplet.select(triplet.pairwise_sq_distances(emb.asnumpy()), y.asnumpy(),
                                   args.mining, args.triplet_alpha, rng,
                                   max_triplets=args.triplet_max_factor * len(y))
            # No triplet: a zero loss keeps every gradient fresh (multi-device step).
            loss = triplet.triplet_loss(mx.nd, emb, found, args.triplet_alpha) if len(found) \
                else (emb * 0).sum()
            metric.metrics[1].update(None, [mx.nd.array([len(found)])])
            metric.metrics[0].update(None, [loss])
        else:
            logits, plain = head(emb, y)
            loss = CROSS_ENTROPY(logits, y)
            metric.metrics[0].update([y], [plain])  # accuracy without the margin
            metric.metrics[1].update(None, [loss])
        out.append(loss)
    return out


def classify_accuracy(net, head, batches, ctx, num_batches):
    """Accuracy of the head's plain logits on `num_batches` batches of a FaceBatches."""
    metric = mx.metric.Accuracy()
    for data, label in batches.epoch(num_batches):
        x, y = mx.nd.array(data, ctx=ctx), mx.nd.array(label, ctx=ctx)
        metric.update([y], [head(net(x), y)[1]])
    return metric.get()[1]
