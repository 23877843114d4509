//! Prints the ObservabilityConfig CRD; `crds/observabilityconfig.yaml` is its output.

fn main() {
    print!("{}", dynoscope_crds::crd_yaml());
}
