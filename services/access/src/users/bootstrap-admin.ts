import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { LOGGER, type Logger } from '@parley/kit';
import { ParleyError } from '@parley/contracts';
import { ACCESS_CONFIG, type AccessConfig } from '../config';
import { UsersService } from './users.service';
import { GroupsService } from '../groups/groups.service';

export class NoAdministratorError extends Error {}

/** The first administrator comes from PARLEY_ADMIN_USERNAME / PARLEY_ADMIN_PASSWORD when no admin exists. */
@Injectable()
export class BootstrapAdmin implements OnApplicationBootstrap {
  constructor(
    @Inject(UsersService) private readonly users: UsersService,
    @Inject(GroupsService) private readonly groups: GroupsService,
    @Inject(ACCESS_CONFIG) private readonly config: AccessConfig,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.groups.ensureDefault();
    if (await this.users.anyAdmin()) return;
    const username = this.config.PARLEY_ADMIN_USERNAME;
    const password = this.config.PARLEY_ADMIN_PASSWORD;
    if (!username || !password) {
      throw new NoAdministratorError(
        'no administrator exists: set PARLEY_ADMIN_USERNAME and PARLEY_ADMIN_PASSWORD to create the first one',
      );
    }
    try {
      await this.users.create({ username, password, is_admin: true });
      this.logger.info({ username }, 'first administrator created');
    } catch (error) {
      if (!(error instanceof ParleyError && error.code === 'USERNAME_TAKEN')) throw error;
      // Another instance created it a moment ago, or the name belongs to a user who becomes the admin.
      if (await this.users.anyAdmin()) return;
      const existing = await this.users.findByUsername(username);
      if (existing) await this.users.promote(existing.id, password);
      this.logger.info({ username }, 'existing user made the first administrator');
    }
  }
}
