"""The O2O-DRL learner (paper IV-C, Algorithms 1 and 2).

* ``settings``   typed hyper-parameters with the paper's defaults; presets ``paper`` and
                 ``project`` (``learner_settings``)
* ``nets``       actor, twin Q, state-value critic; masked softmax / logsumexp
* ``offline``    Algorithm 1: discrete SAC + CQL + V (``train_offline``)
* ``online``     Algorithm 2: PPO + GAE (``PPOUpdate`` on a batch, ``OnlinePPO`` collecting on
                 the simulator, ``train_online``; also the online-only baseline)
* ``policy``     the ``Policy`` handed from phase to phase and to and from model files
* ``from_logs``  offline training and fine-tuning from task logs (the testbed's trainer)
* ``evaluate``   policies run as the numpy ``drl`` rule in the simulator (``evaluate_policy``)
* ``tracking``   JSON-lines and TensorBoard metrics

The modules that train import PyTorch; ``settings`` does not, and neither does the deployed
actor (``o2o.schedulers.drl``).
"""
