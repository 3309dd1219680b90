"""Quantization, compression, the artifact file format and the 16,000,000-byte budget (no Hydra here).

Typical export (import from the modules; the package imports nothing, so a submission ships only the
modules its config uses)::

    qstate = quantize_state_dict(model.state_dict(), QuantConfig())   # scheme="mixed": per-group intN / GPTQ
    info = write_artifact("final_model.golf", qstate, codec="zlib", level=9, config=cfg_dict)  # or codec="best"
    report = build_budget_report(qstate, info, code_bytes, [("train_gpt.py", code_bytes)])
    # code_bytes: golf.record.submission_code_bytes(run_cfg), the generated train_gpt.py as shipped
    print(format_report(report)); check_budget(report)
    model.load_state_dict(load_state_dict_from_artifact(info.path), strict=True)

Modules: config (QuantConfig / GroupQuant / GPTQConfig / QATConfig / BudgetConfig), int8 (official scheme,
registry), intn (per-row intN, scheme "mixed"), clip (clip modes), groups (tensor groups), gptq (Hessians +
solver), qat (fake quantization in training), packing (N-bit packing), compress (codecs, byte shuffle, best),
payload + artifact (file format), budget (report), fitter (bits per group under a byte target).
"""
