# Writes Sidekiq data with the real Sidekiq (Debian's ruby-sidekiq, 6.x) into the
# database of REDIS_URL, then prints what Sidekiq's own API reports for it as JSON.
#
#   REDIS_URL=redis://127.0.0.1:56379/5 ruby sidekiq6_fixture.rb
#
# Planted: jobs in critical/standard/low (one ActiveJob-wrapped), a backlog of 1500 in
# "bulk", a queue whose oldest job waited 120 s, retries (one at retry_count 3), dead
# jobs, processed/failed stats (today's daily keys too) and one process heartbeat with
# a job running for 90 s.
require "json"
require "securerandom"
require "sidekiq"
require "sidekiq/api"
require "sidekiq/launcher"
require "sidekiq/job_retry"

url = ENV.fetch("REDIS_URL")
Sidekiq.configure_client { |c| c.redis = {url: url} }
Sidekiq.logger.level = Logger::ERROR
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

def push(klass, queue, args = [1], extra = {})
  Sidekiq::Client.push({"class" => klass, "queue" => queue, "args" => args}.merge(extra))
end

3.times { push("CriticalJob", "critical") }
2.times { push("StandardJob", "standard") }
push("ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper", "low", [{"job_class" => "ReportJob"}], "wrapped" => "ReportJob")
Sidekiq::Client.push_bulk("class" => "BulkJob", "queue" => "bulk", "args" => (1..1500).map { |i| [i] })

# The oldest job of "slow" waited 120 s (as if no worker took it).
old = {"class" => "SlowQueueJob", "queue" => "slow", "args" => [], "retry" => true,
       "jid" => SecureRandom.hex(12), "created_at" => Time.now.to_f - 120, "enqueued_at" => Time.now.to_f - 120}
Sidekiq.redis do |c|
  c.sadd("queues", "slow")
  c.rpush("queue:slow", Sidekiq.dump_json(old))
end
push("SlowQueueJob", "slow")

# Retries through Sidekiq's own retry handler.
def fail_once(jobstr)
  Sidekiq::JobRetry.new.global(jobstr, "default") { raise ArgumentError, "provider timeout" }
rescue Sidekiq::JobRetry::Handled
end

def job(klass)
  {"class" => klass, "queue" => "default", "args" => [1], "retry" => true,
   "jid" => SecureRandom.hex(12), "created_at" => Time.now.to_f, "enqueued_at" => Time.now.to_f}
end

2.times { fail_once(Sidekiq.dump_json(job("FlakyJob"))) }
deep = job("DeepRetryJob")
jobstr = Sidekiq.dump_json(deep)
4.times do |i|
  fail_once(jobstr)
  entry = Sidekiq::RetrySet.new.find_job(deep["jid"])
  jobstr = entry.value
  entry.delete if i < 3
end

# Dead jobs.
2.times do
  j = job("DoomedJob").merge("error_class" => "RuntimeError", "error_message" => "gave up", "failed_at" => Time.now.to_f)
  Sidekiq::DeadSet.new.kill(Sidekiq.dump_json(j), notify_failure: false)
end

# Stats and a process heartbeat through the launcher.
Sidekiq::Processor::PROCESSED.incr(200)
Sidekiq::Processor::FAILURE.incr(5)
running = job("LongRunningJob")
Sidekiq::Processor::WORKER_STATE.set("tid1", {queue: "critical", payload: Sidekiq.dump_json(running), run_at: Time.now.to_i - 90})
opts = Sidekiq.options.merge(queues: %w[critical critical critical standard standard low], concurrency: 10, tag: "fixture")
launcher = Sidekiq::Launcher.new(opts)
launcher.send(:heartbeat)
Sidekiq::Processor::WORKER_STATE.delete("tid1")

stats = Sidekiq::Stats.new
processes = Sidekiq::ProcessSet.new.map do |p|
  {"identity" => p.identity, "concurrency" => p["concurrency"], "busy" => p["busy"], "queues" => p["queues"]}
end
out = {
  "version" => Sidekiq::VERSION,
  "now" => Time.now.to_f,
  "queues" => Sidekiq::Queue.all.map { |q| {"name" => q.name, "size" => q.size, "latency" => q.latency} },
  "stats" => {
    "processed" => stats.processed, "failed" => stats.failed, "scheduled_size" => stats.scheduled_size,
    "retry_size" => stats.retry_size, "dead_size" => stats.dead_size, "processes_size" => stats.processes_size,
    "enqueued" => stats.enqueued, "workers_size" => stats.workers_size
  },
  "retry_set_size" => Sidekiq::RetrySet.new.size,
  "processes" => processes,
  "workers" => Sidekiq::Workers.new.size
}
puts JSON.generate(out)
