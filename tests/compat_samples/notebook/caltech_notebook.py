# -*- coding: utf-8 -*-
# The cells of a ModelArts notebook (classic SDK) that trains caltech101, deploys the model
# and tries it. Run in a notebook with the MXNet kernel; DATA_DIR, CODE_DIR, SERVICE_DIR and
# TEST_IMAGE point at the local copies of the data, training code and inference code.
import os

from modelarts.session import Session
from modelarts.estimator import Estimator
from modelarts.model import Model, Predictor
from modelarts.config.model_config import ServiceConfig

# In[1]:
session = Session()
bucket = session.default_bucket()
base = '/' + bucket + '/caltech-notebook/'
print('bucket: ' + bucket)

# In[2]:
session.upload_data(bucket_path=base, path=os.environ['DATA_DIR'])
session.upload_data(bucket_path=base, path=os.environ['CODE_DIR'])
print(Estimator.get_framework_list(session))
print([spec['spec_code'] for spec in Estimator.get_train_instance_types(session)['specs']])

# In[3]:
estimator = Estimator(modelarts_session=session,
                      framework_type='MXNet',
                      framework_version='MXNet-1.2.1-python2.7',
                      code_dir=base + 'codes/',
                      boot_file=base + 'codes/train_caltech.py',
                      log_url=base + 'log/',
                      hyperparameters=[{'label': 'num_epochs', 'value': 1},
                                       {'label': 'batch_size', 'value': 8},
                                       {'label': 'num_classes', 'value': 3},
                                       {'label': 'lr', 'value': 0.05}],
                      output_path=base + 'output/',
                      train_instance_type='modelarts.vm.cpu.8u',
                      train_instance_count=1,
                      job_description='caltech101 from a notebook')
job_instance = estimator.fit(inputs=base + 'packed/', wait=True, job_name='caltech')

# In[4]:
job_list = Estimator.get_job_list(session, per_page=10, page=1, order='asc', search_content='caltech')
print('jobs: %d, status of the first: %s' % (job_list['job_total_count'], job_list['jobs'][0]['status']))

# In[5]: the inference code goes next to the exported model, as the tutorial does by hand
for name in ('customize_service.py', 'config.json'):
    session.obs.upload_file(os.path.join(os.environ['SERVICE_DIR'], name), base + 'output/model/')
model = Model(session,
              model_name='caltech',
              model_version='1.0.0',
              source_location=base + 'output/',
              model_type='MXNet',
              model_algorithm='image_classification',
              execution_code=base + 'output/model/customize_service.py')
print(Model.get_model_list(session, model_name='caltech')['count'])

# In[6]:
configs = [ServiceConfig(model_id=model.get_model_id(), weight='100', instance_count=1,
                         specification='modelarts.vm.cpu.2u')]
predictor = model.deploy_predictor(service_name='caltech', configs=configs)
print(predictor.predict(data=os.environ['TEST_IMAGE'], data_type='images'))
print(Predictor.get_service_list(session)['count'])

# In[7]:
predictor.update_service_config(status='stopped')
predictor.update_service_config(status='running')
result = predictor.predict(data=os.environ['TEST_IMAGE'], data_type='images')
print('predicted: ' + result['predicted_label'])
session.obs.download_file(base + 'output/model/labels.txt', 'labels.txt')
print(open('labels.txt').read().split())

# In[8]: clean up
predictor.delete_service()
model.delete_model()
Estimator.delete_job_by_id(session, estimator.job_id)
print('run ' + session.run_id)
