# -*- coding: utf-8 -*-
# Handwritten digits with MXNet Gluon on ModelArts. The data folder holds the four MNIST files
# (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-...) as downloaded.
from __future__ import print_function

import argparse
import gzip
import os
import struct
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn
import moxing as mox

parser = argparse.ArgumentParser()
parser.add_argument('--data_url', type=str, help='the obs path of the mnist data')
parser.add_argument('--train_url', type=str, help='the obs path for the model')
parser.add_argument('--num_gpus', type=int, default=0)
parser.add_argument('--epochs', type=int, default=10)
parser.add_argument('--batch_size', type=int, default=64)
parser.add_argument('--learning_rate', type=float, default=0.1)
args, unknown = parser.parse_known_args()

ctx = mx.gpu() if args.num_gpus > 0 else mx.cpu()
data_path = 'mnist_data'    # a local copy next to the code
mox.file.copy_parallel(args.data_url, data_path)


def read_data(label_name, image_name):
    with gzip.open(os.path.join(data_path, label_name)) as flbl:
        struct.unpack('>II', flbl.read(8))
        label = np.frombuffer(flbl.read(), dtype=np.int8)
    with gzip.open(os.path.join(data_path, image_name), 'rb') as fimg:
        _, num, rows, cols = struct.unpack('>IIII', fimg.read(16))
        image = np.frombuffer(fimg.read(), dtype=np.uint8).reshape(len(label), 1, rows, cols)
    return label.astype(np.float32), image.astype(np.float32) / 255


train_lbl, train_img = read_data('train-labels-idx1-ubyte.gz', 'train-images-idx3-ubyte.gz')
val_lbl, val_img = read_data('t10k-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz')
train_data = gluon.data.DataLoader(gluon.data.ArrayDataset(train_img, train_lbl), args.batch_size, shuffle=True)
val_data = gluon.data.DataLoader(gluon.data.ArrayDataset(val_img, val_lbl), args.batch_size)

net = nn.HybridSequential()
with net.name_scope():
    net.add(nn.Conv2D(channels=8, kernel_size=3, activation='relu'))
    net.add(nn.MaxPool2D(pool_size=2, strides=2))
    net.add(nn.Flatten())
    net.add(nn.Dense(32, activation='relu'))
    net.add(nn.Dense(10))
net.initialize(mx.init.Xavier(), ctx=ctx)
net.hybridize()

softmax_cross_entropy = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': args.learning_rate, 'momentum': 0.9})

for epoch in range(args.epochs):
    tic = time.time()
    metric = mx.metric.Accuracy()
    for data, label in train_data:
        data, label = data.as_in_context(ctx), label.as_in_context(ctx)
        with autograd.record():
            output = net(data)
            loss = softmax_cross_entropy(output, label)
        loss.backward()
        trainer.step(data.shape[0])
        metric.update([label], [output])
    name, train_acc = metric.get()
    metric = mx.metric.Accuracy()
    for data, label in val_data:
        metric.update([label], [net(data.as_in_context(ctx))])
    print('Epoch [%d] train accuracy %.3f, validation accuracy %.3f, %.1f s'
          % (epoch, train_acc, metric.get()[1], time.time() - tic))

# symbol + params for the model import
if not os.path.exists('mnist_out'):
    os.mkdir('mnist_out')
net.export('mnist_out/mnist', epoch=args.epochs)
mox.file.copy_parallel('mnist_out', args.train_url)
print('exported to', args.train_url)
