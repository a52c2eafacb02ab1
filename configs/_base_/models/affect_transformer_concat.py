# Audio, visual and text sequence encoders (a 3-layer Transformer each: AIM's MOSI setting, one
# layer per block), concatenation fusion, linear head: the affect baseline. Feature sizes are
# MOSI/MOSEI's (mosi_raw.pkl); UR-Funny configs override them.
feature_dims = dict(audio=74, visual=35, text=300)
model = dict(
    type='MultimodalClassifier',
    encoders={m: dict(type='TransformerEncoder', in_channels=d, embed_dims=64, num_layers=3,
                      num_heads=4)
              for m, d in feature_dims.items()},
    fusion=dict(type='ConcatFusion'),
    head=dict(type='LinearClsHead', num_classes=2),
    modality_logits='analytic',
    data_preprocessor=dict(type='MultimodalDataPreprocessor'))
