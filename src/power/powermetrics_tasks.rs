//! powermetrics' own process in its `tasks` sampler: its CPU time in a window and its share
//! of all tasks' CPU time, from which the sampler's own power is estimated.
//!
//! With the `tasks` sampler a document lists every task that ran in the window, each with
//! `pid`, `name` and `cputime_ns` (CPU time over the window), and an `all_tasks` total
//! (`all_tasks.cputime_ns`). The list is flat (`tasks[]`) or, with
//! `--show-process-coalition`, grouped (`coalitions[].tasks[]`); both are read. No task has
//! watts (`energy_impact` is unitless), so the sampler's power is an estimate: its CPU-time
//! share of the window times the window's measured CPU energy.
//!
//! Which task is the sampler: the process we spawn is powermetrics itself when we run as
//! root, else `sudo`, whose child is powermetrics. So:
//! - the task whose `pid` is our child's is ours, whatever its name (`sudo` or
//!   `powermetrics`);
//! - if ours is not itself named `powermetrics`, the one task named exactly `powermetrics`
//!   is added (sudo's child); when none or several carry that name (another powermetrics
//!   runs beside ours), the window cannot tell which one is ours and says so
//!   ([`SamplerTask::NotFound`]).

use plist::{Dictionary, Value};

use super::SamplerProcessWindow;

/// The name powermetrics' task carries in its own task list.
pub const TASK_NAME: &str = "powermetrics";

/// What one document's task list says about the sampler's own process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamplerTask {
    /// Found: the sampler's CPU time (its task, plus `sudo` in front of it when that is
    /// the process we spawned) and all tasks' CPU time over the window (ns).
    Found {
        /// The sampler process's CPU time in the window (ns).
        cpu_ns: u64,
        /// All tasks' CPU time in the window (`all_tasks.cputime_ns`).
        all_tasks_cpu_ns: u64,
    },
    /// The document lists tasks, but the sampler's cannot be told; the text says why.
    NotFound(&'static str),
}

impl SamplerTask {
    /// Reads a document's task list. `child_pid` is the process we spawned (powermetrics,
    /// or `sudo` running it), where known. `None` when the document lists no tasks (the
    /// `tasks` sampler was not asked for).
    pub fn from_document(root: &Dictionary, child_pid: Option<u32>) -> Option<SamplerTask> {
        let flat = root.get("tasks").and_then(Value::as_array);
        let grouped = root.get("coalitions").and_then(Value::as_array);
        if flat.is_none() && grouped.is_none() {
            return None;
        }
        let Some(all_tasks_cpu_ns) = root
            .get("all_tasks")
            .and_then(Value::as_dictionary)
            .and_then(cpu_ns)
        else {
            return Some(SamplerTask::NotFound(
                "the task list has no `all_tasks.cputime_ns` total",
            ));
        };
        let tasks = flat.into_iter().flatten().chain(
            grouped
                .into_iter()
                .flatten()
                .filter_map(Value::as_dictionary)
                .filter_map(|c| c.get("tasks").and_then(Value::as_array))
                .flatten(),
        );
        let mut ours: Option<(bool, u64)> = None;
        let mut named: Vec<u64> = Vec::new();
        for task in tasks.filter_map(Value::as_dictionary) {
            let is_powermetrics = task.get("name").and_then(Value::as_string) == Some(TASK_NAME);
            let pid = task
                .get("pid")
                .and_then(Value::as_signed_integer)
                .and_then(|p| u32::try_from(p).ok());
            let Some(cpu) = cpu_ns(task) else { continue };
            if pid.is_some() && pid == child_pid {
                ours = Some((is_powermetrics, cpu));
            } else if is_powermetrics {
                named.push(cpu);
            }
        }
        Some(match (ours, named.as_slice()) {
            (Some((true, cpu)), _) => SamplerTask::Found {
                cpu_ns: cpu,
                all_tasks_cpu_ns,
            },
            (ours, [one]) => SamplerTask::Found {
                cpu_ns: one + ours.map_or(0, |(_, cpu)| cpu),
                all_tasks_cpu_ns,
            },
            (_, []) => SamplerTask::NotFound("no task named `powermetrics` in the task list"),
            (_, _) => SamplerTask::NotFound(
                "several tasks named `powermetrics`, none of them the one spawned",
            ),
        })
    }

    /// The window's figure: the sampler's CPU-time share of all tasks' times the window's
    /// measured CPU energy (`cpu_mj`). `None` when the task was not found, the CPU energy
    /// is not measured, or no task ran.
    pub fn window(&self, cpu_mj: Option<f64>, window_ns: u64) -> Option<SamplerProcessWindow> {
        let SamplerTask::Found {
            cpu_ns,
            all_tasks_cpu_ns,
        } = *self
        else {
            return None;
        };
        let cpu_mj = cpu_mj.filter(|mj| mj.is_finite())?;
        if all_tasks_cpu_ns == 0 {
            return None;
        }
        // The sampler's time is one of the tasks': a share above 1 is a rounding artefact.
        let share = (cpu_ns as f64 / all_tasks_cpu_ns as f64).min(1.0);
        Some(SamplerProcessWindow {
            cpu_ns,
            energy_mj: share * cpu_mj,
            cpu_energy_mj: cpu_mj,
            window_ns,
        })
    }
}

fn cpu_ns(dict: &Dictionary) -> Option<u64> {
    match dict.get("cputime_ns")? {
        Value::Integer(i) => i.as_unsigned(),
        Value::Real(r) if r.is_finite() && *r >= 0.0 => Some(*r as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: i64, name: &str, cpu: u64) -> String {
        format!(
            "<dict><key>pid</key><integer>{pid}</integer><key>name</key><string>{name}</string>\
             <key>cputime_ns</key><integer>{cpu}</integer></dict>"
        )
    }

    fn root(tasks: &[String], all: Option<u64>) -> Dictionary {
        let all = all.map_or(String::new(), |n| {
            format!("<key>all_tasks</key><dict><key>cputime_ns</key><integer>{n}</integer></dict>")
        });
        let xml = format!(
            "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>tasks</key><array>{}</array>{all}</dict></plist>",
            tasks.concat()
        );
        Value::from_reader_xml(xml.as_bytes())
            .unwrap()
            .into_dictionary()
            .unwrap()
    }

    #[test]
    fn our_child_then_the_one_powermetrics_task() {
        let tasks = [
            task(10, "sudo", 1_000),
            task(11, TASK_NAME, 20_000),
            task(12, "kernel_task", 79_000),
        ];
        // As root: the child is powermetrics itself.
        assert_eq!(
            SamplerTask::from_document(&root(&tasks, Some(100_000)), Some(11)),
            Some(SamplerTask::Found {
                cpu_ns: 20_000,
                all_tasks_cpu_ns: 100_000
            })
        );
        // Under sudo: sudo's time and its child's.
        assert_eq!(
            SamplerTask::from_document(&root(&tasks, Some(100_000)), Some(10)),
            Some(SamplerTask::Found {
                cpu_ns: 21_000,
                all_tasks_cpu_ns: 100_000
            })
        );
        // Child not listed (it used no CPU): powermetrics by name.
        assert_eq!(
            SamplerTask::from_document(&root(&tasks, Some(100_000)), None),
            Some(SamplerTask::Found {
                cpu_ns: 20_000,
                all_tasks_cpu_ns: 100_000
            })
        );
    }

    #[test]
    fn ambiguous_missing_or_absent_lists() {
        let two = [task(11, TASK_NAME, 1), task(12, TASK_NAME, 2)];
        assert!(matches!(
            SamplerTask::from_document(&root(&two, Some(10)), Some(99)),
            Some(SamplerTask::NotFound(why)) if why.contains("several")
        ));
        // One of the two is ours: no ambiguity.
        assert!(matches!(
            SamplerTask::from_document(&root(&two, Some(10)), Some(12)),
            Some(SamplerTask::Found { cpu_ns: 2, .. })
        ));
        assert!(matches!(
            SamplerTask::from_document(&root(&[task(1, "launchd", 5)], Some(10)), None),
            Some(SamplerTask::NotFound(_))
        ));
        assert!(matches!(
            SamplerTask::from_document(&root(&[task(1, TASK_NAME, 5)], None), None),
            Some(SamplerTask::NotFound(why)) if why.contains("all_tasks")
        ));
        let no_list = Value::from_reader_xml(
            &b"<?xml version=\"1.0\"?><plist version=\"1.0\"><dict></dict></plist>"[..],
        )
        .unwrap()
        .into_dictionary()
        .unwrap();
        assert_eq!(SamplerTask::from_document(&no_list, None), None);
    }

    #[test]
    fn window_is_the_cpu_time_share_of_cpu_energy() {
        let found = SamplerTask::Found {
            cpu_ns: 25,
            all_tasks_cpu_ns: 100,
        };
        let w = found.window(Some(400.0), 7).unwrap();
        assert_eq!(w.energy_mj, 100.0);
        assert_eq!((w.cpu_ns, w.cpu_energy_mj, w.window_ns), (25, 400.0, 7));
        assert_eq!(found.window(None, 7), None, "no CPU energy: unknown");
        assert_eq!(SamplerTask::NotFound("x").window(Some(1.0), 7), None);
        let idle = SamplerTask::Found {
            cpu_ns: 0,
            all_tasks_cpu_ns: 0,
        };
        assert_eq!(idle.window(Some(1.0), 7), None);
    }
}
