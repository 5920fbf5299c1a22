"""The O2O-DRL learner (SPEC section 5; paper IV-C, Algorithms 1 and 2).

* ``settings``   typed hyper-parameters with the paper's defaults (``OfflineSettings``,
                 ``OnlineSettings``, ``with_overrides``)
* ``nets``       actor, twin Q, state-value critic; masked softmax / logsumexp
* ``data``       the offline data set layout, checks, .npz, a simulator rollout for tests
* ``offline``    Algorithm 1: discrete SAC + CQL + V (``train_offline``)
* ``online``     Algorithm 2: PPO + GAE fine-tuning and the online-only baseline (``train_online``)
* ``evaluate``   policies run as the numpy ``drl`` rule in the simulator (``evaluate_policy``)
* ``io``         actor/critic to and from model files and stores (``save_policy``, ``load_policy``)
* ``tracking``   JSON-lines and TensorBoard metrics
* ``experiment`` the comparison behind ``o2o bench learn``
* ``commands``   ``o2o train offline|online``, ``o2o evaluate``, ``o2o bench learn|actor``

Importing this package imports PyTorch; the deployed actor (``o2o.schedulers.drl``) does not.
"""
