//! The NVML meter through the real sampler and `PolledSource`, on fake GPUs
//! (`common::gpu`; this machine has none). The real driver, over a stub libnvidia-ml, is in
//! `nvml_driver.rs`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::gpu::{
    assert_measured_gpu_only, assert_within_1_percent, available, counter, gpu_power, meter,
    power_only, run, run_at_known_power, three, unavailable, FakeGpu, Kind, A100, H100, P100,
};
use tracing_energy::power::nvml::GpuSelection;
use tracing_energy::power::polled::update_period;
use tracing_energy::power::{
    Availability, Meter, PolledSource, SampleBuffer, Sampler, SamplerConfig, SamplerStatus,
};

#[test]
fn an_energy_counter_gpu_gives_its_power() {
    let m = meter(vec![counter(0, H100, 300.0)], GpuSelection::all());
    assert_eq!(
        m.is_available(),
        Availability::Available(format!(
            "will read GPU 0 ({H100}, energy counter) [all GPUs]"
        ))
    );
    let r = run(
        m,
        Duration::from_millis(100),
        Duration::from_millis(900),
        || {},
    );
    assert_eq!(r.status, SamplerStatus::Stopped);
    assert_measured_gpu_only(&r.samples);
    assert_eq!(r.tapped, r.samples.len(), "the tap sees every sample");
    // The counter starts at 5,000,000 mJ (energy since the driver was loaded): windows hold
    // only what was used in them.
    let (mean, median) = gpu_power(&r.samples);
    assert_within_1_percent(mean, 300_000.0, "mean");
    assert_within_1_percent(median, 300_000.0, "median window");
    assert_eq!(
        r.method.as_deref(),
        Some("nvml: energy counter (nvmlDeviceGetTotalEnergyConsumption) on GPU 0")
    );
}

#[test]
fn a_power_only_gpu_is_integrated_over_time() {
    let m = meter(vec![power_only(0, P100, 75_000)], GpuSelection::all());
    assert_eq!(
        m.is_available(),
        Availability::Available(format!("will read GPU 0 ({P100}, power x time) [all GPUs]"))
    );
    let r = run_at_known_power(m, Duration::from_millis(900), 75_000.0);
    let method = r.method.unwrap();
    assert!(
        method.starts_with("nvml: power x time (nvmlDeviceGetPowerUsage")
            && method.contains("on GPU 0: no energy counter")
            && method.contains("Volta"),
        "{method}"
    );
}

#[test]
fn two_gpus_are_summed() {
    let m = meter(
        vec![counter(0, H100, 300.0), power_only(1, P100, 100_000)],
        GpuSelection::all(),
    );
    let r = run_at_known_power(m, Duration::from_millis(900), 400_000.0);
    let method = r.method.unwrap();
    assert!(
        method.contains("energy counter (nvmlDeviceGetTotalEnergyConsumption) on GPU 0;")
            && method.contains("power x time (nvmlDeviceGetPowerUsage")
            && method.contains("on GPU 1:"),
        "{method}"
    );
}

#[test]
fn gpus_are_chosen_by_cuda_visible_devices_or_an_explicit_list_which_wins() {
    let cuda = |value, order| GpuSelection::resolve_with(None, Some(value), order).unwrap();
    // CUDA_VISIBLE_DEVICES, in CUDA's PCI bus order: the GPUs it names, in its order.
    let text = available(&meter(three(), cuda("2,0", Some("PCI_BUS_ID"))));
    assert_eq!(
        text,
        format!(
            "will read GPU 2 ({H100}, energy counter), GPU 0 ({H100}, energy counter) \
             [CUDA_VISIBLE_DEVICES=2,0]"
        )
    );
    // By UUID prefix.
    let text = available(&meter(three(), cuda("GPU-1111", None)));
    assert!(
        text.starts_with(&format!("will read GPU 1 ({A100}")),
        "{text}"
    );
    // CUDA's default order (fastest first) is not NVML's on GPUs of different models.
    let (reason, fix) = unavailable(&meter(three(), cuda("1", None)));
    assert!(reason.contains("fastest first"), "{reason}");
    assert!(fix.contains("CUDA_DEVICE_ORDER=PCI_BUS_ID"), "{fix}");
    // CUDA_VISIBLE_DEVICES that hides every GPU.
    let (reason, _) = unavailable(&meter(three(), cuda("-1", None)));
    assert!(reason.contains("leaves no GPU visible"), "{reason}");

    // An explicit list wins over the environment; its energy is the sum of its GPUs.
    let chosen = GpuSelection::resolve_with(Some("0,2"), Some("1"), Some("PCI_BUS_ID")).unwrap();
    let m = meter(three(), chosen);
    let text = available(&m);
    assert!(
        text.contains("GPU 0 (") && text.contains("GPU 2 (") && !text.contains("GPU 1 ("),
        "{text}"
    );
    assert!(text.ends_with("[--gpus 0,2]"), "{text}");
    let r = run(
        m,
        Duration::from_millis(100),
        Duration::from_millis(700),
        || {},
    );
    assert_measured_gpu_only(&r.samples);
    assert_within_1_percent(gpu_power(&r.samples).0, 500_000.0, "GPU 0 + GPU 2");
    assert!(
        r.method.as_deref().unwrap().ends_with("on GPU 0, 2"),
        "{:?}",
        r.method
    );
}

#[test]
fn a_gpu_that_does_not_exist_is_refused_with_the_gpus_found() {
    let m = meter(three(), GpuSelection::parse("0,5").unwrap());
    let (reason, fix) = unavailable(&m);
    assert!(
        reason.starts_with("--gpus 0,5 names GPU 5, and the driver reports 3 GPUs:"),
        "{reason}"
    );
    for found in [
        format!("GPU 0 ({H100}) [GPU-0000abcd-0000]"),
        format!("GPU 1 ({A100}) [GPU-1111abcd-0000]"),
        format!("GPU 2 ({H100}) [GPU-2222abcd-0000]"),
    ] {
        assert!(reason.contains(&found), "{found} in {reason}");
    }
    assert!(fix.contains("choose among those"), "{fix}");
    // Reading it says the same, as an error.
    let mut m = m;
    let e = m.read().unwrap_err().to_string();
    assert!(e.contains("names GPU 5") && e.contains("Fix:"), "{e}");
    // And the sampler refuses to start.
    let e = Sampler::start(
        Box::new(PolledSource::new(vec![Box::new(meter(
            three(),
            GpuSelection::parse("7").unwrap(),
        ))])),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::new(SampleBuffer::new())),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("power source `nvml` is not available") && e.contains("names GPU 7"),
        "{e}"
    );
}

#[test]
fn a_gpu_failing_mid_run_fails_the_source_and_keeps_the_samples() {
    let gpus = vec![counter(0, H100, 300.0), counter(1, A100, 250.0)];
    let lost = Arc::clone(&gpus[1].lost);
    let r = run(
        meter(gpus, GpuSelection::all()),
        Duration::from_millis(50),
        Duration::from_millis(1000),
        || lost.store(true, Ordering::SeqCst),
    );
    let SamplerStatus::Failed(reason) = &r.status else {
        panic!("expected a failure, got {:?}", r.status)
    };
    assert!(
        reason.contains(&format!(
            "GPU 1 ({A100}): nvmlDeviceGetTotalEnergyConsumption failed: device fell off the bus"
        )) && reason.contains("Fix: check the GPU with `nvidia-smi -i 1`"),
        "{reason}"
    );
    // The windows before the failure are kept, and they were right.
    assert_measured_gpu_only(&r.samples);
    assert_within_1_percent(gpu_power(&r.samples).0, 550_000.0, "before the failure");
}

#[test]
fn the_update_period_of_the_counter_is_measured() {
    let slow = FakeGpu {
        kind: Kind::Counter {
            watts: 300.0,
            offset_mj: 123,
            every: Some(Duration::from_millis(50)),
        },
        ..counter(0, H100, 0.0)
    };
    let mut m = meter(vec![slow.clone()], GpuSelection::all());
    let p = update_period(&mut m, Duration::from_millis(600))
        .unwrap()
        .expect("the counter changed");
    assert!(
        p >= Duration::from_millis(45) && p <= Duration::from_millis(60),
        "{p:?}"
    );
    // The sampler measures it too, and samples at that period rather than the 10 ms asked
    // (on a fixed grid: a late wake-up lengthens one window and shortens the next).
    let r = run(
        meter(vec![slow], GpuSelection::all()),
        Duration::from_millis(10),
        Duration::from_millis(600),
        || {},
    );
    let p = r.counter_update.expect("measured");
    assert!(
        p >= Duration::from_millis(45) && p <= Duration::from_millis(60),
        "{p:?}"
    );
    assert!(r.samples.len() >= 3, "{}", r.samples.len());
    let lengths: Vec<u64> = r.samples.iter().map(|s| s.duration_ns()).collect();
    let mean = lengths.iter().sum::<u64>() / lengths.len() as u64;
    assert!(
        (45_000_000..=60_000_000).contains(&mean),
        "mean window {mean} ns: {lengths:?}"
    );
}
