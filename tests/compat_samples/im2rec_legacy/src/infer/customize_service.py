# -*- coding: utf-8 -*-
import mxnet as mx
import numpy as np
from mms.log import get_logger
from mms.model_service.mxnet_model_service import MXNetBaseService
from mms.utils.mxnet import image

logger = get_logger()


class DLSMXNetBaseService(MXNetBaseService):
    def __init__(self, model_name, model_dir, manifest, gpu=None):
        print "init flowers service"
        self.model_name = model_name
        self.ctx = mx.gpu(int(gpu)) if gpu is not None else mx.cpu()
        self._signature = manifest['Model']['Signature']
        symbol_file = manifest['Model']['Symbol']
        params_file = manifest['Model']['Parameters']
        prefix = model_dir + '/' + symbol_file[:-len('-symbol.json')]
        epoch = int(params_file[-len('0000.params'):-len('.params')])
        sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, epoch)
        data_shapes = []
        for input in self._signature['inputs']:
            data_shapes.append((input['data_name'], tuple([1] + input['data_shape'][1:])))
        self.mx_model = mx.mod.Module(symbol=sym, context=self.ctx, data_names=['data'], label_names=None)
        self.mx_model.bind(for_training=False, data_shapes=data_shapes)
        self.mx_model.set_params(arg_params, aux_params, allow_missing=True)

    def _preprocess(self, data):
        img_list = []
        for idx in xrange(len(data)):
            img = image.read(data[idx])
            img = image.resize(img, 28, 28)
            img = image.transform_shape(img)
            img_list.append(img)
        return img_list

    def _inference(self, data):
        self.mx_model.forward(mx.io.DataBatch(data), is_train=False)
        return self.mx_model.get_outputs()[0]

    def _postprocess(self, data):
        prob = data.asnumpy()[0]
        logger.info('probabilities %s' % prob)
        return int(np.argmax(prob))
