import { Controller, Delete, Get, HttpCode, Inject, Patch, Post, Put } from '@nestjs/common';
import {
  AccessControlRpc,
  AccessRpc,
  CreateUserBodySchema,
  IdParamSchema,
  ListUsersQuerySchema,
  PageQuerySchema,
  pageSchema,
  UpdateUserBodySchema,
  UserSchema,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { z } from 'zod';
import { Caller } from '../auth/principal';
import { ApiRoute, ValidBody, ValidParams, ValidQuery, type Valid } from '../http/api-route';
import { paged } from '../http/paging';
import { UserRoleParamsSchema } from '../http/params';

@Controller('api/v1/users')
export class UsersController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary: 'Create a user (admin)',
    tags: ['users'],
    body: CreateUserBodySchema,
    status: 201,
    response: UserSchema,
    errors: ['USERNAME_TAKEN'],
    admin: true,
  })
  create(@Caller() actor: Principal, @ValidBody() body: Valid<typeof CreateUserBodySchema>) {
    return this.rpc.call(AccessRpc.createUser, { actor, ...body });
  }

  @Get()
  @ApiRoute({
    summary: 'List users (admin); `q` matches the username',
    tags: ['users'],
    query: [ListUsersQuerySchema, PageQuerySchema],
    status: 200,
    response: pageSchema(UserSchema),
    admin: true,
    errors: ['INVALID_CURSOR'],
  })
  list(@Caller() actor: Principal, @ValidQuery() query: Valid<[typeof ListUsersQuerySchema, typeof PageQuerySchema]>) {
    return this.rpc.call(AccessRpc.listUsers, { actor, ...paged(query) });
  }

  @Patch(':id')
  @ApiRoute({
    summary: 'Change a user (admin); a disabled user cannot log in and their tokens stop working',
    tags: ['users'],
    params: IdParamSchema,
    body: UpdateUserBodySchema,
    status: 200,
    response: UserSchema,
    errors: ['NOT_FOUND', 'CONFLICT'],
    admin: true,
  })
  update(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() patch: Valid<typeof UpdateUserBodySchema>,
  ) {
    return this.rpc.call(AccessRpc.updateUser, { actor, id, patch });
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiRoute({
    summary: 'Delete a user (admin): disabled and anonymised; their sessions stay, readable by admins',
    tags: ['users'],
    params: IdParamSchema,
    status: 204,
    response: null,
    errors: ['NOT_FOUND', 'CONFLICT'],
    admin: true,
  })
  async remove(@Caller() actor: Principal, @ValidParams() { id }: Valid<typeof IdParamSchema>) {
    await this.rpc.call(AccessControlRpc.deleteUser, { actor, id });
  }

  @Put(':id/roles/:role_id')
  @ApiRoute({
    summary: 'Give a user a role (admin)',
    tags: ['users'],
    params: UserRoleParamsSchema,
    status: 200,
    response: z.object({ user_id: z.uuid(), role_id: z.uuid() }),
    errors: ['NOT_FOUND'],
    admin: true,
  })
  assignRole(@Caller() actor: Principal, @ValidParams() { id, role_id }: Valid<typeof UserRoleParamsSchema>) {
    return this.rpc.call(AccessControlRpc.putUserRole, { actor, user_id: id, role_id });
  }

  @Delete(':id/roles/:role_id')
  @HttpCode(204)
  @ApiRoute({
    summary: 'Take a role from a user (admin)',
    tags: ['users'],
    params: UserRoleParamsSchema,
    status: 204,
    response: null,
    errors: ['NOT_FOUND'],
    admin: true,
  })
  async unassignRole(@Caller() actor: Principal, @ValidParams() { id, role_id }: Valid<typeof UserRoleParamsSchema>) {
    await this.rpc.call(AccessControlRpc.deleteUserRole, { actor, user_id: id, role_id });
  }
}
