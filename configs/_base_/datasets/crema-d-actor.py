# CREMA-D with the actor-disjoint split (splits/actor/*.csv: actors drawn with seed 0,
# ~10% of the 91 actors in val and ~10% in test), as CREMA-D's maintainers advise.
# Everything else as crema-d.py.
_base_ = ['./crema-d.py']

split_scheme = 'actor'
train_dataloader = dict(dataset=dict(split_scheme=split_scheme))
val_dataloader = dict(dataset=dict(split_scheme=split_scheme))
test_dataloader = dict(dataset=dict(split_scheme=split_scheme))
