"""int8 accuracy analysis (`deploy analyze`): which conv loses accuracy, and the smallest set to keep
in fp32 for a budget.

`analyze.load_plan(cfg, folder)` → (the compiler's prepared graph, its int8 plan);
`analyze.analyze(cfg, model, plan, ...)` → Analysis (per-layer errors, end to end, search).
Modules: samples (the images and masks), graphs (the onnxruntime models, all by the QDQ writer the
int8 build imports), errors (SQNR, cosine), score (end to end), layers (per conv, accumulated and
isolated), search (the budget search), apply (skip_nodes into the YAML), report (md, json, plot),
cli. Sits above the compiler and quantize packages; its plot is deploy.tools.report_plots'.
"""
