import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { Metrics } from '../observability/metrics';
import { Readiness } from './readiness';
import { Public } from './public.decorator';

/** `/healthz` (alive), `/readyz` (dependencies reachable, migrations applied), `/metrics` (Prometheus). */
@Controller()
@Public()
export class HealthController {
  constructor(
    @Inject(Readiness) private readonly readiness: Readiness,
    @Inject(Metrics) private readonly metrics: Metrics,
  ) {}

  @Get('healthz')
  healthz() {
    return { status: 'ok' };
  }

  @Get('readyz')
  async readyz(@Res() reply: FastifyReply) {
    const report = await this.readiness.report();
    await reply
      .status(report.ready ? 200 : 503)
      .send({ status: report.ready ? (report.degraded ? 'degraded' : 'ready') : 'not_ready', checks: report.checks });
  }

  @Get('metrics')
  async metricsText(@Res() reply: FastifyReply) {
    const body = await this.metrics.registry.metrics();
    await reply.header('content-type', this.metrics.registry.contentType).send(body);
  }
}
