# The workflow is workflow/Snakefile; this one line keeps `snakemake` working from the repository root.
workflow.include("workflow/Snakefile", overwrite_default_target=True)
