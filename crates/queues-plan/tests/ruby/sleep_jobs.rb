# Loaded by the real Sidekiq (`sidekiq -r sleep_jobs.rb`) in the queues plan
# validation tests: SleepJob sleeps args[0] seconds; a server middleware records, for
# every job, its queue, enqueued_at and the time a processor started it, in the list
# `powertune:test:started` of the same database.
require "json"
require "sidekiq"

class SleepJob
  include Sidekiq::Worker
  sidekiq_options retry: false

  def perform(seconds)
    sleep(seconds)
  end
end

class RecordStart
  def call(_worker, job, queue)
    started = Time.now.to_f
    Sidekiq.redis { |c| c.rpush("powertune:test:started", JSON.generate([queue, job["enqueued_at"], started])) }
    yield
  end
end

Sidekiq.configure_server do |config|
  config.server_middleware { |chain| chain.add RecordStart }
end
