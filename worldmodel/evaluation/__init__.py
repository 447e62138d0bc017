"""The evaluation of a world model, in parts: `trajectories` (what is dreamed and against which truth),
`metrics` (what is measured on the frames), `baselines` (what the model is compared with), `report`
(report.json, the README table, the strip) and `perceptual` (the ST-LPIPS distance). The command is
`python -m worldmodel.evaluate`."""
