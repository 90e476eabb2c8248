"""The aortic-valve system: detect the valve in parasternal short-axis frames, crop it, classify calcification.

    sonokit train av-detect --data DIR          # DIR: boxes.csv [+ labels.csv] (sonokit synth psax writes one)
    sonokit train av-calcification --data DIR
    sonokit av predict RUN_DET RUN_CLS frames/ --out av.csv --crops crops/
    sonokit av evaluate RUN_DET RUN_CLS --out DIR    # held-out patients, detector boxes, heuristic rows
    sonokit av heuristic --data DIR --out heuristic.csv
    sonokit av experiments --data DIR --out DIR      # the paper's tables, small and CPU-sized

Modules: boxes (IoU, coordinate maps, matching, mAP), data (index, crops), detector (model, loss, decoding),
datasets, tasks, heuristic, metrics, cascade, experiments, plots.
"""
